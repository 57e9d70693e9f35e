package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkFile(t *testing.T, content string, allFlags bool, help map[string]bool) []string {
	t.Helper()
	p := writeFile(t, "m.yaml", content)
	docs, problems, err := readDocs(p)
	if err != nil {
		return []string{err.Error()}
	}
	return append(problems, checkSet(p, docs, allFlags, help)...)
}

func fixture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDocsAcceptsTheBase(t *testing.T) {
	if ps := checkFile(t, fixture(t), false, nil); len(ps) > 0 {
		t.Fatalf("problems in a valid set:\n%s", strings.Join(ps, "\n"))
	}
}

func TestDocsFindsProblems(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown flag", "- --watch-config-map=true", "- --watch-configmap=true", "--watch-configmap is not a flag"},
		{"flag type", "- --port=8443", "- --port=https", `invalid argument "https" for "--port"`},
		{"duration without unit", "- --shutdown-delay=5s", "- --shutdown-delay=5", `missing unit in duration "5"`},
		{"boolean without value", "- --watch-config-map=true", "- --watch-config-map", "use --flag=value"},
		{"in-cluster", "- --in-cluster=false", "- --in-cluster=true", "--in-cluster must be false"},
		{"undefined variable", "$(POD_NAMESPACE)", "$(MY_NAMESPACE)", "refers to a variable"},
		{"misspelt field", "reinvocationPolicy: IfNeeded", "reinvocationPolicyy: IfNeeded", `unknown field "reinvocationPolicyy"`},
		{"no reinvocation", "reinvocationPolicy: IfNeeded", "reinvocationPolicy: Never", "reinvocationPolicy must be IfNeeded"},
		{"v1beta1 only", "  - v1\n  - v1beta1", "  - v1beta1", "admissionReviewVersions"},
		{"own namespace", "- pod-identity-webhook\n      - kube-system", "- kube-system", "must exclude the webhook's own namespace"},
		{"short timeout", "timeoutSeconds: 5", "timeoutSeconds: 3", "must exceed --service-account-lookup-grace-period + --policy-timeout (3s)"},
		{"termination grace", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 15", "must exceed --shutdown-delay + --shutdown-grace-period (15s)"},
		{"extra RBAC", "  - serviceaccounts\n", "  - serviceaccounts\n  - secrets\n", "cluster-wide get /secrets is more than"},
		{"missing RBAC", "  - configmaps\n", "  - pods\n", "lacks get /configmaps"},
		{"CEL syntax", "!has(object.metadata.annotations) ||", "!has(object.metadata.annotations) |||", "Syntax error"},
		{"readiness path", "path: /readyz", "path: /ready", "path /ready, want /readyz"},
		{"probe on TLS port", "path: /readyz\n            port: metrics", "path: /readyz\n            port: https", "want the metrics port"},
		{"service links", "enableServiceLinks: false", "enableServiceLinks: true", "enableServiceLinks must be false"},
		{"writable root", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem must be true"},
		{"certificate secret", "secretName: pod-identity-webhook-tls\n  usages", "secretName: other\n  usages", "no Certificate of that name writes Secret"},
		{"service port", "targetPort: https", "targetPort: 8080", "has no port targeting the webhook's https port"},
		{"skip label", "operator: DoesNotExist", "operator: Exists", "skip-pod-identity-webhook DoesNotExist"},
		{"cpu limit", "limits:\n            memory: 256Mi", "limits:\n            cpu: 100m\n            memory: 256Mi", "CPU limit"},
		{"no kind", "kind: PodDisruptionBudget", "", "apiVersion, kind and metadata.name are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := fixture(t)
			if !strings.Contains(base, tc.old) {
				t.Fatalf("fixture has no %q", tc.old)
			}
			ps := checkFile(t, strings.Replace(base, tc.old, tc.new, 1), false, nil)
			for _, p := range ps {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Fatalf("want a problem containing %q, got:\n%s", tc.want, strings.Join(ps, "\n"))
		})
	}
}

func TestDocsAllFlagsAndHelp(t *testing.T) {
	ps := checkFile(t, fixture(t), true, nil)
	if !strings.Contains(strings.Join(ps, "\n"), "--aws-default-region is not passed") {
		t.Fatalf("-all-flags: want missing flags reported, got:\n%s", strings.Join(ps, "\n"))
	}
	help := parseHelpFlags("Flags:\n      --port int   TLS port\n  -h, --help   help\n      --in-cluster   x\n")
	if !help["port"] || !help["help"] || !help["in-cluster"] {
		t.Fatalf("parseHelpFlags: %v", help)
	}
	ps = checkFile(t, fixture(t), false, help)
	if !strings.Contains(strings.Join(ps, "\n"), "--watch-config-map is not listed by `serve --help`") {
		t.Fatalf("-flags-from: want unlisted flags reported, got:\n%s", strings.Join(ps, "\n"))
	}
}

func TestBundleConfigMaps(t *testing.T) {
	cm := `---
apiVersion: v1
kind: ConfigMap
metadata:
  name: bundle-x
  namespace: pod-identity-webhook
  labels:
    pod-identity-webhook.io/bundle: "true"
data:
  manifest.yaml: |
    apiVersion: pod-identity-webhook.io/v1alpha1
    kind: Bundle
    name: x
  x.rego: "package x"
`
	if ps := checkFile(t, fixture(t)+cm, false, nil); len(ps) > 0 {
		t.Fatalf("valid bundle ConfigMap: %v", ps)
	}
	bad := strings.Replace(cm, "  x.rego:", "  README.md:", 1)
	ps := checkFile(t, fixture(t)+bad, false, nil)
	if !strings.Contains(strings.Join(ps, "\n"), `key "README.md"`) {
		t.Fatalf("want the README.md key refused, got %v", ps)
	}
}

func TestSame(t *testing.T) {
	a := writeFile(t, "a.yaml", fixture(t))
	b := writeFile(t, "b.yaml", strings.Replace(fixture(t), "failurePolicy: Fail", "failurePolicy: Ignore", 1))
	if ps, err := runSame([]string{a, a}); err != nil || len(ps) > 0 {
		t.Fatalf("same file: %v %v", ps, err)
	}
	ps, err := runSame([]string{a, b})
	if err != nil || !strings.Contains(strings.Join(ps, "\n"), "webhook 0 differs") {
		t.Fatalf("want the webhook difference, got %v %v", ps, err)
	}
}

func TestValues(t *testing.T) {
	chart := "../helm/pod-identity-webhook/"
	if ps, err := runValues([]string{chart + "values.yaml", chart + "flag-defaults.yaml", chart + "templates/_helpers.tpl"}); err != nil || len(ps) > 0 {
		t.Fatalf("the chart: %v %v", ps, err)
	}
	values := writeFile(t, "values.yaml", "flags:\n  mutation:\n    token-expiration: 3600\n    aws-region: x\n")
	ps, err := runValues([]string{values, chart + "flag-defaults.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(ps, "\n")
	for _, want := range []string{"token-expiration: 3600, but the binary's default is 86400", "aws-region: not a flag", "no value for --port"} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in:\n%s", want, got)
		}
	}
}
