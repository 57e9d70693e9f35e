package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"sigs.k8s.io/yaml"
)

// ManifestFile is the name of a bundle's manifest, in a directory or as a ConfigMap key.
const ManifestFile = "manifest.yaml"

// APIVersion and Kind identify a bundle manifest.
const (
	APIVersion = "pod-identity-webhook.io/v1alpha1"
	Kind       = "Bundle"
)

// Bundle is a loaded, not yet compiled, policy bundle: its manifest and its Rego
// modules, each remembered with the file it came from so every error can name it.
type Bundle struct {
	// Source says where the bundle came from, for messages: "embedded default bundle",
	// a directory path, or "configmap <namespace>/<name>".
	Source   string
	Manifest Manifest
	Modules  []Module // policy modules, compiled for admission
	Tests    []Module // *_test.rego modules, compiled only to run tests
}

// Name is the bundle's name from its manifest.
func (b *Bundle) Name() string { return b.Manifest.Name }

// Module is one parsed Rego file of a bundle.
type Module struct {
	File   string // path inside the bundle ("web_identity.rego", "lib/x.rego")
	Source string
	Parsed *ast.Module
}

// Manifest is the content of manifest.yaml. See docs/policies.md.
type Manifest struct {
	APIVersion  string         `json:"apiVersion"`
	Kind        string         `json:"kind"`
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Params      map[string]any `json:"params,omitempty"`
	Grants      Grants         `json:"grants,omitempty"`
	// ServiceAccountRules are rules that depend only on the ServiceAccount, the
	// identities, the params and the namespace: evaluated once per ServiceAccount
	// version rather than per pod (see engine/sarules.go).
	ServiceAccountRules []string `json:"serviceAccountRules,omitempty"`
	Policies            []Policy `json:"policies,omitempty"`
}

// Grants widen what a bundle's policies may change beyond the default guardrails.
type Grants struct {
	// Paths are JSON Pointer patterns: "*" matches one segment, a final "**" any rest.
	Paths []string `json:"paths,omitempty"`
	// VolumeTypes are volume source fields allowed besides projected, configMap,
	// secret and emptyDir (e.g. "hostPath").
	VolumeTypes []string `json:"volumeTypes,omitempty"`
	// SecurityContextFields are pod securityContext fields allowed besides fsGroup and
	// fsGroupChangePolicy.
	SecurityContextFields []string `json:"securityContextFields,omitempty"`
}

// Policy is one entry of a manifest's policy list.
type Policy struct {
	Name        string           `json:"name"`
	Description string           `json:"description,omitempty"`
	Match       []MatchCondition `json:"match,omitempty"`
	Rule        string           `json:"rule"`
	Notes       string           `json:"notes,omitempty"`
	Params      map[string]any   `json:"params,omitempty"`
	OnError     OnError          `json:"onError,omitempty"`
}

// MatchCondition is a named CEL expression that must be true for a policy to apply.
type MatchCondition struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
}

// OnError says what a policy failure does to the admission.
type OnError string

const (
	// OnErrorSkip drops the failing policy's mutations and goes on (the default).
	OnErrorSkip OnError = "skip"
	// OnErrorDeny rejects the pod.
	OnErrorDeny OnError = "deny"
)

// LoadError says which bundle, file and field are wrong, and why.
type LoadError struct {
	Source string // bundle source
	File   string // file in the bundle, may be empty
	Field  string // manifest field path such as "policies[1].rule", may be empty
	Line   int    // line in File, 0 when unknown
	Reason string
}

func (e *LoadError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.File != "" {
		b.WriteString(": ")
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// LoadDir loads a bundle from a directory: manifest.yaml at its root and every *.rego
// file below it. Other files (README, sample pods) are ignored.
func LoadDir(dir string) (*Bundle, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, &LoadError{Source: dir, Reason: fmt.Sprintf("cannot read bundle directory: %v", errors.Unwrap(err))}
	}
	if !info.IsDir() {
		return nil, &LoadError{Source: dir, Reason: "not a directory (a bundle is a directory with manifest.yaml and .rego files)"}
	}
	return LoadFS(os.DirFS(dir), dir)
}

// LoadFS loads a bundle from the root of fsys; source names it in messages.
func LoadFS(fsys fs.FS, source string) (*Bundle, error) {
	files := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir // .git and friends, and the ..data of ConfigMap volumes
			}
			return nil
		}
		if p != ManifestFile && !strings.HasSuffix(p, ".rego") {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files[p] = string(data)
		return nil
	})
	if err != nil {
		return nil, &LoadError{Source: source, Reason: fmt.Sprintf("cannot read bundle: %v", err)}
	}
	return parseBundle(source, files)
}

// LoadMap loads a bundle from ConfigMap-style keys: "manifest.yaml" and "*.rego".
// Any other key is refused, so a misspelt key is reported instead of ignored.
func LoadMap(source string, data map[string]string) (*Bundle, error) {
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if k != ManifestFile && !strings.HasSuffix(k, ".rego") {
			return nil, &LoadError{Source: source, File: k,
				Reason: "unexpected key: a bundle ConfigMap holds only manifest.yaml and *.rego keys"}
		}
	}
	return parseBundle(source, data)
}

func parseBundle(source string, files map[string]string) (*Bundle, error) {
	raw, ok := files[ManifestFile]
	if !ok {
		return nil, &LoadError{Source: source, File: ManifestFile, Reason: "missing: every bundle needs a manifest"}
	}
	b := &Bundle{Source: source}
	if err := yaml.UnmarshalStrict([]byte(raw), &b.Manifest); err != nil {
		return nil, &LoadError{Source: source, File: ManifestFile, Reason: cleanYAMLError(err)}
	}
	if err := validateManifest(&b.Manifest); err != nil {
		err.Source, err.File = source, ManifestFile
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if name == ManifestFile {
			continue
		}
		// The module's locations carry "<bundle>/<file>", the key it is compiled under,
		// so that compiler errors can be traced back to the bundle.
		mod, err := ast.ParseModuleWithOpts(moduleKey(b.Manifest.Name, name), files[name], ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, regoLoadError(source, name, err)
		}
		if mod == nil {
			return nil, &LoadError{Source: source, File: name, Reason: "empty Rego file (a module needs a package)"}
		}
		m := Module{File: name, Source: files[name], Parsed: mod}
		if strings.HasSuffix(name, "_test.rego") {
			b.Tests = append(b.Tests, m)
		} else {
			b.Modules = append(b.Modules, m)
		}
	}
	if len(b.Modules) == 0 && len(b.Manifest.Policies) > 0 {
		return nil, &LoadError{Source: source, Reason: "the manifest lists policies but the bundle has no .rego modules"}
	}
	return b, nil
}

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	celVarName = regexp.MustCompile(`^[A-Za-z][-A-Za-z0-9_.]*$`)
)

func validateManifest(m *Manifest) *LoadError {
	fail := func(field, format string, args ...any) *LoadError {
		return &LoadError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if m.APIVersion != APIVersion {
		return fail("apiVersion", "must be %q, got %q", APIVersion, m.APIVersion)
	}
	if m.Kind != Kind {
		return fail("kind", "must be %q, got %q", Kind, m.Kind)
	}
	if !dnsLabel.MatchString(m.Name) || len(m.Name) > 63 {
		return fail("name", "must be a DNS label (lower-case letters, digits and '-', at most 63), got %q", m.Name)
	}
	for i, p := range m.Grants.Paths {
		if !strings.HasPrefix(p, "/") {
			return fail(fmt.Sprintf("grants.paths[%d]", i), "must be a JSON Pointer pattern starting with '/', got %q", p)
		}
		if idx := strings.Index(p, "**"); idx >= 0 && idx != len(p)-2 {
			return fail(fmt.Sprintf("grants.paths[%d]", i), "'**' may only end a pattern, got %q", p)
		}
	}
	for i, r := range m.ServiceAccountRules {
		if err := validateRuleRef(r); err != "" {
			return fail(fmt.Sprintf("serviceAccountRules[%d]", i), "%s", err)
		}
	}
	seen := map[string]int{}
	for i, p := range m.Policies {
		field := fmt.Sprintf("policies[%d]", i)
		if !dnsLabel.MatchString(p.Name) || len(p.Name) > 63 {
			return fail(field+".name", "must be a DNS label (lower-case letters, digits and '-'), got %q", p.Name)
		}
		if j, dup := seen[p.Name]; dup {
			return fail(field+".name", "%q is already the name of policies[%d]", p.Name, j)
		}
		seen[p.Name] = i
		if err := validateRuleRef(p.Rule); err != "" {
			return fail(field+".rule", "%s", err)
		}
		if p.Notes != "" {
			if err := validateRuleRef(p.Notes); err != "" {
				return fail(field+".notes", "%s", err)
			}
		}
		switch p.OnError {
		case "", OnErrorSkip, OnErrorDeny:
		default:
			return fail(field+".onError", "must be %q or %q, got %q", OnErrorSkip, OnErrorDeny, p.OnError)
		}
		names := map[string]bool{}
		for j, c := range p.Match {
			cf := fmt.Sprintf("%s.match[%d]", field, j)
			if !celVarName.MatchString(c.Name) {
				return fail(cf+".name", "must be a name such as has-role-arn, got %q", c.Name)
			}
			if names[c.Name] {
				return fail(cf+".name", "%q is used twice in this policy", c.Name)
			}
			names[c.Name] = true
			if strings.TrimSpace(c.Expression) == "" {
				return fail(cf+".expression", "must not be empty")
			}
		}
	}
	return nil
}

// validateRuleRef checks that s names a Rego rule under data, e.g.
// data.pod_identity.web_identity.mutations. It returns the reason when it does not.
func validateRuleRef(s string) string {
	if s == "" {
		return "must name the Rego rule that returns the mutations, e.g. data.site.mutations"
	}
	ref, err := ast.ParseRef(s)
	if err != nil || !ref.HasPrefix(ast.DefaultRootRef) || len(ref) < 2 || !ref.IsGround() {
		return fmt.Sprintf("must be a reference under data such as data.site.mutations, got %q", s)
	}
	return ""
}

// moduleKey names a module in the compiler shared by all bundles.
func moduleKey(bundle, file string) string { return bundle + "/" + file }

// regoLoadError turns an OPA parse error into a LoadError naming the file and line.
func regoLoadError(source, file string, err error) *LoadError {
	var errs ast.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		e := errs[0]
		le := &LoadError{Source: source, File: file, Reason: e.Message}
		if e.Location != nil {
			le.Line = e.Location.Row
		}
		if len(errs) > 1 {
			le.Reason += fmt.Sprintf(" (and %d more errors)", len(errs)-1)
		}
		return le
	}
	return &LoadError{Source: source, File: file, Reason: err.Error()}
}

// cleanYAMLError drops the layers of wrapping sigs.k8s.io/yaml adds, keeping the reason.
func cleanYAMLError(err error) string {
	s := err.Error()
	for _, prefix := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		s = strings.ReplaceAll(s, prefix, "")
	}
	if strings.HasPrefix(s, "error converting YAML to JSON: ") {
		s = "invalid YAML: " + strings.TrimPrefix(s, "error converting YAML to JSON: yaml: ")
	}
	return s
}
