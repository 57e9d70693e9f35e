package conformance

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/upstreamfixture"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
	"github.com/pod-identity-webhook/pod-identity-webhook/sources"
	"github.com/pod-identity-webhook/pod-identity-webhook/webhook"
)

// TestServeEqualsEval sends every upstream fixture, as an AdmissionReview, through the
// server's HTTP handler, applies the patch it returns, and compares the pod with what
// `eval -o json` prints for the same pod, ServiceAccount and flags: the two share one
// code path (admission.Admitter), and this keeps them so.
func TestServeEqualsEval(t *testing.T) {
	fixtures, err := upstreamfixture.Load("testdata/upstream")
	if err != nil {
		t.Fatal(err)
	}
	if len(fixtures) != 18 {
		t.Fatalf("found %d fixtures", len(fixtures))
	}
	bundle, err := engine.LoadFS(policies.FS, "embedded default bundle")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			pod := fx.Pod
			args := []string{}
			for _, h := range []struct{ key, flag string }{
				{"region", "aws-default-region"}, {"injectSTS", "sts-regional-endpoint"}, {"expiration", "token-expiration"},
			} {
				if v, ok := fx.Handler[h.key]; ok {
					args = append(args, "--"+h.flag+"="+v)
				}
			}
			saAnn := map[string]string{"eks.amazonaws.com/role-arn": ""} // the role, or empty
			maps.Copy(saAnn, fx.ServiceAccountAnnotations)

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
