// Package conformance runs golden fixtures through the eval command, in-process, and
// compares the pod it prints with the pod the Amazon EKS Pod Identity Webhook would
// produce (the fixture's pod with the upstream patch applied). See testdata/README.md.
package conformance

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/pod-identity-webhook/pod-identity-webhook/cli"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/upstreamfixture"
)

// runEval runs `pod-identity-webhook eval args...` in-process.
func runEval(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Main(append([]string{"eval"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name string, v any) string {
	t.Helper()
	var data []byte
	switch x := v.(type) {
	case string:
		data = []byte(x)
	default:
		var err error
		if data, err = yaml.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// expectedPod applies an upstream-style patch to the pod (JSON).
func expectedPod(t *testing.T, podJSON []byte, patchJSON string) corev1.Pod {
	t.Helper()
	out := podJSON
	if patchJSON != "" {
		p, err := jsonpatch.DecodePatch([]byte(patchJSON))
		if err != nil {
			t.Fatalf("fixture patch: %v", err)
		}
		if out, err = p.Apply(podJSON); err != nil {
			t.Fatalf("applying the fixture patch: %v", err)
		}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// comparePods decodes eval's JSON output into a Pod and compares it field by field
// (env order included) with want.
func comparePods(t *testing.T, stdout string, want corev1.Pod) {
	t.Helper()
	var got corev1.Pod
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("eval -o json printed no pod: %v\n%s", err, stdout)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("resulting pod differs from upstream's (-upstream +ours):\n%s", diff)
	}
}

// forEachEvaluator runs a fixture once per Rego evaluator (see engine.Evaluator), as
// subtests name/ir and name/topdown, giving each the flag that chooses it: both must
// produce upstream's pod.
func forEachEvaluator(t *testing.T, name string, run func(t *testing.T, evaluatorFlag string)) {
	t.Run(name, func(t *testing.T) {
		for _, ev := range engine.Evaluators {
			t.Run(string(ev), func(t *testing.T) { run(t, "--policy-evaluator="+string(ev)) })
		}
	})
}

// TestUpstreamFixtures runs every golden fixture of the upstream webhook, with the
// mapping of testdata/upstream/README (fixture annotations → ServiceAccount annotations
// and flags).
func TestUpstreamFixtures(t *testing.T) {
	fixtures, err := upstreamfixture.Load("testdata/upstream")
	if err != nil {
		t.Fatal(err)
	}
	if len(fixtures) != 18 {
		t.Fatalf("found %d upstream fixtures, want 18", len(fixtures))
	}
	for _, fx := range fixtures {
		forEachEvaluator(t, fx.Name, func(t *testing.T, evaluatorFlag string) {
			if fx.Skip {
				t.Skip("fixture marked skip")
			}
			sa := map[string]any{"apiVersion": "v1", "kind": "ServiceAccount",
				"metadata": map[string]any{"name": "default", "namespace": "default", "annotations": fx.ServiceAccountAnnotations}}
			args := []string{evaluatorFlag}
			flags := map[string]string{"injectSTS": "sts-regional-endpoint", "expiration": "token-expiration", "region": "aws-default-region", "mountPath": "token-mount-path"}
			for key, flag := range flags {
				if v, ok := fx.Handler[key]; ok {
					args = append(args, "--"+flag+"="+v)
				}
			}
			dir := t.TempDir()
			podFile := writeFile(t, dir, "pod.yaml", fx.Pod)
			saFile := writeFile(t, dir, "sa.yaml", sa)
			code, stdout, stderr := runEval(t, append([]string{"--pod", podFile, "--service-account", saFile, "-o", "json"}, args...)...)
			if code != 0 {
				t.Fatalf("eval exit %d: %s", code, stderr)
			}
			podJSON, _ := json.Marshal(fx.Pod)
			comparePods(t, stdout, expectedPod(t, podJSON, fx.ExpectedPatch))
		})
	}
}

// ownFixture is one case of testdata/own: see testdata/README.md.
type ownFixture struct {
	Description string   `json:"description"`
	Args        []string `json:"args"`
	Pod         any      `json:"pod"`
	PodText     string   `json:"podText"`
	// ServiceAccount is a ServiceAccount manifest; absent means not found.
	ServiceAccount     any    `json:"serviceAccount"`
	ServiceAccountText string `json:"serviceAccountText"`
	// Identities is the container-credentials identities document.
	Identities     any    `json:"identities"`
	IdentitiesText string `json:"identitiesText"`
	// ConfigMap is a pod-identity-webhook ConfigMap manifest.
	ConfigMap     any    `json:"configMap"`
	ConfigMapText string `json:"configMapText"`
	// ExpectedPatch is an upstream-style patch that turns Pod into the expected pod;
	// absent means the pod is unchanged.
	ExpectedPatch any `json:"expectedPatch"`
	// ExpectExit and ExpectStderr check failures (exit 2 on bad input).
	ExpectExit   int      `json:"expectExit"`
	ExpectStderr []string `json:"expectStderr"`
	// ExpectExplain are substrings of `-o explain` output.
	ExpectExplain []string `json:"expectExplain"`
}

// TestOwnFixtures runs this project's fixtures: container-credentials mode, the kOps
// ConfigMap, the annotation prefix and bad input.
func TestOwnFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/own/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found only %d fixtures in testdata/own", len(files))
	}
	for _, f := range files {
		forEachEvaluator(t, strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T, evaluatorFlag string) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var fx ownFixture
			if err := yaml.UnmarshalStrict(raw, &fx); err != nil {
				t.Fatalf("fixture: %v", err)
			}
			dir := t.TempDir()
			args := append([]string{evaluatorFlag}, fx.Args...)
			input := func(flag, name string, v any, text string) {
				switch {
				case text != "":
					args = append(args, flag, writeFile(t, dir, name, text))
				case v != nil:
					args = append(args, flag, writeFile(t, dir, name, v))
				}
			}
			input("--pod", "pod.yaml", fx.Pod, fx.PodText)
			input("--service-account", "sa.yaml", fx.ServiceAccount, fx.ServiceAccountText)
			input("--identity-configmap", "cm.yaml", fx.ConfigMap, fx.ConfigMapText)
			if fx.Identities != nil {
				js, _ := json.Marshal(fx.Identities)
				fx.IdentitiesText = string(js)
			}
			input("--watch-container-credentials-config", "identities.json", nil, fx.IdentitiesText)

			code, stdout, stderr := runEval(t, append(args, "-o", "json")...)
			if code != fx.ExpectExit {
				t.Fatalf("exit %d, want %d; stderr: %s", code, fx.ExpectExit, stderr)
			}
			for _, s := range fx.ExpectStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q lacks %q", stderr, s)
				}
			}
			if code == 2 {
				if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
					t.Errorf("bad input must give one line on stderr, got:\n%s", stderr)
				}
				return
			}
			podJSON, _ := json.Marshal(fx.Pod)
			patch := ""
			if fx.ExpectedPatch != nil {
				js, _ := json.Marshal(fx.ExpectedPatch)
				patch = string(js)
			}
			comparePods(t, stdout, expectedPod(t, podJSON, patch))
			if len(fx.ExpectExplain) > 0 {
				_, explain, _ := runEval(t, append(args, "-o", "explain")...)
				for _, s := range fx.ExpectExplain {
					if !strings.Contains(explain, s) {
						t.Errorf("explain lacks %q:\n%s", s, explain)
					}
				}
			}
		})
	}
}
