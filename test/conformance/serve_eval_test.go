package conformance

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
	"github.com/pod-identity-webhook/pod-identity-webhook/sources"
	"github.com/pod-identity-webhook/pod-identity-webhook/webhook"
)

// TestServeEqualsEval sends every upstream fixture, as an AdmissionReview, through the
// server's HTTP handler, applies the patch it returns, and compares the pod with what
// `eval -o json` prints for the same pod, ServiceAccount and flags: the two share one
// code path (admission.Admitter), and this keeps them so.
func TestServeEqualsEval(t *testing.T) {
	files, _ := filepath.Glob("testdata/upstream/*.pod.yaml")
	if len(files) != 18 {
		t.Fatalf("found %d fixtures", len(files))
	}
	bundle, err := engine.LoadFS(policies.FS, "embedded default bundle")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".pod.yaml"), func(t *testing.T) {
			raw, _ := os.ReadFile(f)
			var pod map[string]any
			if err := yaml.Unmarshal(raw, &pod); err != nil {
				t.Fatal(err)
			}
			meta := pod["metadata"].(map[string]any)
			meta["namespace"] = "default"
			pod["spec"].(map[string]any)["serviceAccountName"] = "default"
			ann := meta["annotations"].(map[string]any)
			role, _ := ann[testingPrefix+"serviceAccount/roleArn"].(string)
			args := []string{}
			if r, ok := ann[testingPrefix+"handler/region"].(string); ok {
				args = append(args, "--aws-default-region="+r)
			}
			if v, ok := ann[testingPrefix+"handler/injectSTS"].(string); ok {
				args = append(args, "--sts-regional-endpoint="+v)
			}
			if v, ok := ann[testingPrefix+"handler/expiration"].(string); ok {
				args = append(args, "--token-expiration="+v)
			}
			saAnn := map[string]string{"eks.amazonaws.com/role-arn": role}
			for _, k := range []string{"audience", "sts-regional-endpoints", "token-expiration"} {
				if v, ok := ann[testingPrefix+"serviceAccount/"+k].(string); ok {
					saAnn["eks.amazonaws.com/"+k] = v
				}
			}

			// eval
			dir := t.TempDir()
			podFile := writeFile(t, dir, "pod.yaml", pod)
			saFile := writeFile(t, dir, "sa.yaml", map[string]any{"apiVersion": "v1", "kind": "ServiceAccount",
				"metadata": map[string]any{"name": "default", "namespace": "default", "annotations": saAnn}})
			code, evalOut, stderr := runEval(t, append([]string{"--pod", podFile, "--service-account", saFile, "-o", "json"}, args...)...)
			if code != 0 {
				t.Fatalf("eval: %s", stderr)
			}

			// serve's handler, configured by the same flags
			fs := newServeFlags(t, args)
			cfg, err := config.Load(fs, nil)
			if err != nil {
				t.Fatal(err)
			}
			program, err := engine.Compile(context.Background(), []*engine.Bundle{bundle}, cfg.EngineOptions())
			if err != nil {
				t.Fatal(err)
			}
			h := &webhook.Handler{Admitter: &admission.Admitter{
				Program: func() *engine.Program { return program },
				Sources: &sources.Static{ServiceAccounts: []*engine.ServiceAccount{{Name: "default", Namespace: "default", Annotations: saAnn}}},
			}}
			podJSON, _ := json.Marshal(pod)
			review, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
				"request": map[string]any{"uid": "u", "namespace": "default", "operation": "CREATE",
					"kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"}, "object": json.RawMessage(podJSON)}})
			req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(review))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var resp struct {
				Response struct {
					Allowed bool   `json:"allowed"`
					Patch   string `json:"patch"`
				} `json:"response"`
			}
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &resp) != nil || !resp.Response.Allowed {
				t.Fatalf("handler: %d %s", rec.Code, rec.Body)
			}
			patched := podJSON
			if resp.Response.Patch != "" {
				p, _ := base64.StdEncoding.DecodeString(resp.Response.Patch)
				jp, err := jsonpatch.DecodePatch(p)
				if err != nil {
					t.Fatal(err)
				}
				if patched, err = jp.Apply(podJSON); err != nil {
					t.Fatal(err)
				}
			}
			var served, evaluated corev1.Pod
			_ = json.Unmarshal(patched, &served)
			_ = json.Unmarshal([]byte(evalOut), &evaluated)
			if diff := cmp.Diff(evaluated, served); diff != "" {
				t.Fatalf("served pod differs from eval's (-eval +served):\n%s", diff)
			}
		})
	}
}

func newServeFlags(t *testing.T, args []string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.AddMutationFlags(fs)
	config.AddPolicyFlags(fs)
	config.AddClusterFlags(fs)
	config.AddServeFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}
