package cli

import (
	"strings"

	opacmd "github.com/open-policy-agent/opa/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pod-identity-webhook/pod-identity-webhook/builtins"
)

// testIgnoreDefault keeps `opa test` from loading the YAML files that live beside the
// Rego in a bundle (manifest.yaml, sample pods and ServiceAccounts) as data documents:
// two of them in one directory would collide at the same data path. Tests supply data
// with `with`; pass --ignore explicitly to load YAML data anyway.
var testIgnoreDefault = []string{"*.yaml", "*.yml"}

// newOPACommand returns OPA's own command line (eval, test, fmt, check, ...) with this
// project's built-ins registered, so policies can be tested exactly as they run.
func newOPACommand() *cobra.Command {
	builtins.RegisterRego()
	root := &cobra.Command{
		Use:   "opa",
		Short: "The Open Policy Agent command line, with pod-identity-webhook's built-ins",
		Long: `The Open Policy Agent command line with pod-identity-webhook's Rego built-ins
(pod_identity.*) registered, so that policies can be checked and tested as they run:

  pod-identity-webhook opa test policies/ examples/

"opa test" ignores *.yaml and *.yml files by default (bundle manifests and sample
pods live beside the Rego); pass --ignore to change that.`,
	}
	opacmd.Command(root, "OPA")
	for _, c := range root.Commands() {
		if c.Name() != "test" {
			continue
		}
		// Replace (unlike Set) leaves the flag "unchanged", so a user's own --ignore
		// replaces this default instead of adding to it.
		if f := c.Flags().Lookup("ignore"); f != nil {
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				_ = sv.Replace(testIgnoreDefault)
				f.DefValue = "[" + strings.Join(testIgnoreDefault, ",") + "]"
			}
		}
	}
	return root
}
