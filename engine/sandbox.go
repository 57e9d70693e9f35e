package engine

import (
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// forbiddenBuiltin says why a Rego built-in may not be used in a policy. Policies must
// be pure functions of their input: no network, no clock, no randomness. That keeps
// admission fast and predictable, and makes memoising results per pod template sound.
func forbiddenBuiltin(name string) (reason string, forbidden bool) {
	switch {
	case name == "http.send":
		return "it reaches the network", true
	case strings.HasPrefix(name, "net."):
		return "net.* built-ins are not allowed (some reach the network); use CEL's cidr() and ip() in match conditions instead", true
	case name == "time.now_ns":
		return "it reads the clock, which makes results non-deterministic", true
	case strings.HasPrefix(name, "rand."), name == "uuid.rfc4122":
		return "it is random, which makes results non-deterministic", true
	case name == "opa.runtime":
		return "it exposes the webhook's runtime environment", true
	case name == "io.jwt.decode_verify", name == "crypto.x509.parse_and_verify_certificates",
		name == "crypto.x509.parse_and_verify_certificates_with_options":
		return "it reads the clock to check validity, which makes results non-deterministic", true
	}
	return "", false
}

// sandboxCapabilities is OPA's capability set for this version without the forbidden
// built-ins, so that the compiler itself refuses them even where the scan below might
// not see a call (defence in depth).
func sandboxCapabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0]
	for _, b := range caps.Builtins {
		if _, bad := forbiddenBuiltin(b.Name); !bad {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	return caps
}

// checkSandbox reports the first forbidden built-in call in a bundle's modules, naming
// the bundle, file, line and the policies whose package holds the call.
func checkSandbox(b *Bundle, modules []Module) error {
	for _, m := range modules {
		var found *LoadError
		visit := func(op ast.Ref, loc *ast.Location) bool {
			if found != nil {
				return true
			}
			name := op.String()
			reason, bad := forbiddenBuiltin(name)
			if !bad {
				return false
			}
			found = &LoadError{Source: b.Source, File: m.File,
				Reason: fmt.Sprintf("built-in %s is not allowed in policies: %s%s", name, reason, policiesInPackage(b, m.Parsed.Package.Path))}
			if loc != nil {
				found.Line = loc.Row
			}
			return true
		}
		ast.WalkExprs(m.Parsed, func(e *ast.Expr) bool {
			if e.IsCall() {
				return visit(e.Operator(), e.Location)
			}
			return found != nil
		})
		ast.WalkTerms(m.Parsed, func(t *ast.Term) bool {
			if call, ok := t.Value.(ast.Call); ok && len(call) > 0 {
				if ref, ok := call[0].Value.(ast.Ref); ok {
					return visit(ref, t.Location)
				}
			}
			return found != nil
		})
		if found != nil {
			return found
		}
	}
	return nil
}

// policiesInPackage names the manifest policies whose rule lives in pkg, for messages.
func policiesInPackage(b *Bundle, pkg ast.Ref) string {
	var names []string
	for _, p := range b.Manifest.Policies {
		ref, err := ast.ParseRef(p.Rule)
		if err == nil && len(ref) > 1 && ref[:len(ref)-1].Equal(pkg) {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (policy " + strings.Join(names, ", ") + ")"
}
