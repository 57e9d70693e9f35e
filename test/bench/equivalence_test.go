package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/upstreamfixture"
)

// The reference is only a fair baseline if it does the engine's job: these tests send
// the same reviews to both and require the same resulting pod (each patch applied with
// evanphx/json-patch), and the same patch layout (the same operations on the same
// paths, in any order: the engine gives all plain containers their env before their
// mounts, the reference goes container by container), so both sides build and encode
// the same amount of patch.

// outcome is what one handler made of a review.
type outcome struct {
	pod   corev1.Pod
	paths []string
	patch bool
}

func admit(t *testing.T, h http.Handler, review []byte) outcome {
	t.Helper()
	var in struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(review, &in); err != nil {
		t.Fatal(err)
	}
	c := newCall()
	c.serve(h, review)
	resp, err := c.response()
	if err != nil {
		t.Fatal(err)
	}
	obj := []byte(in.Request.Object)
	var out outcome
	if len(resp.Patch) > 0 {
		out.patch = true
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch: %v\n%s", err, resp.Patch)
		}
		if obj, err = p.Apply(obj); err != nil {
			t.Fatalf("applying the patch: %v\n%s", err, resp.Patch)
		}
		var ops []struct{ Op, Path string }
		if err := json.Unmarshal(resp.Patch, &ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			out.paths = append(out.paths, op.Op+" "+op.Path)
		}
	}
	if err := json.Unmarshal(obj, &out.pod); err != nil {
		t.Fatal(err)
	}
	return out
}

// same requires the reference and the engine's handler to agree on review; it returns
// the reference's outcome.
func same(t *testing.T, ref, h http.Handler, review []byte) outcome {
	t.Helper()
	want, got := admit(t, ref, review), admit(t, h, review)
	if diff := cmp.Diff(want.pod, got.pod); diff != "" {
		t.Fatalf("resulting pod differs (-reference +engine):\n%s", diff)
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(want.paths)), slices.Sorted(slices.Values(got.paths))); diff != "" {
		t.Errorf("patch layout differs (-reference +engine):\n%s", diff)
	}
	return want
}

// TestEquivalenceBenchdata checks every benchmark case.
func TestEquivalenceBenchdata(t *testing.T) {
	cfg := BenchConfig()
	prog, err := CompileDefault(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range benchdata.Sizes {
		for _, matched := range []bool{true, false} {
			t.Run(string(size)+"/"+matchName(matched), func(t *testing.T) {
				sa := ServiceAccount(matched)
				ref, h := NewReference(RefConfigFrom(cfg), sa), NewHandler(prog, sa)
				review := NewTemplate(size)
				out := same(t, ref, h, review.Body)
				if out.patch != matched {
					t.Fatalf("patched=%v, want %v", out.patch, matched)
				}
				if matched {
					pod := benchdata.Pod(size)
					spec := pod["spec"].(map[string]any)
					inits, _ := spec["initContainers"].([]any)
					containers := spec["containers"].([]any)
					// 5 env vars (each its own op when the container has env) + the mount per
					// container, and the volume.
					want := 1
					for _, c := range append(inits, containers...) {
						if _, hasEnv := c.(map[string]any)["env"]; hasEnv {
							want += 6
						} else {
							want += 2
						}
					}
					if len(out.paths) != want {
						t.Errorf("%d operations, want %d: %v", len(out.paths), want, out.paths)
					}
				}
				// The miss variation changes nothing but the template hash.
				review.SetUID(42)
				review.SetTemplate(0xabc)
				same(t, ref, h, review.Body)
			})
		}
	}
}

// TestEquivalenceUpstreamFixtures runs upstream's golden fixtures (mapped as the
// conformance suite maps them: fixture annotations to ServiceAccount annotations and
// flags) through both, and also checks the reference against upstream's own result.
func TestEquivalenceUpstreamFixtures(t *testing.T) {
	fixtures, err := upstreamfixture.Load("../conformance/testdata/upstream")
	if err != nil {
		t.Fatal(err)
	}
	programs := map[string]*engine.Program{}
	var mu sync.Mutex
	program := func(cfg *config.Config) *engine.Program {
		key := fmt.Sprint(cfg.Params())
		mu.Lock()
		defer mu.Unlock()
		if p, ok := programs[key]; ok {
			return p
		}
		p, err := CompileDefault(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		programs[key] = p
		return p
	}
	for _, fx := range fixtures {
		t.Run(fx.Name, func(t *testing.T) {
			if fx.Skip {
				t.Skip("fixture marked skip")
			}
			sa := &engine.ServiceAccount{Name: "default", Namespace: "default", ResourceVersion: "1", Annotations: fx.ServiceAccountAnnotations}
			cfg := config.Defaults()
			for key, v := range fx.Handler {
				var err error
				switch key {
				case "injectSTS":
					cfg.STSRegionalEndpoint, err = strconv.ParseBool(v)
				case "expiration":
					cfg.TokenExpiration, err = strconv.ParseInt(v, 10, 64)
				case "region":
					cfg.AWSDefaultRegion = v
				case "mountPath":
					cfg.TokenMountPath = v
				}
				if err != nil {
					t.Fatalf("handler/%s: %v", key, err)
				}
			}

			podJSON, err := json.Marshal(fx.Pod)
			if err != nil {
				t.Fatal(err)
			}
			review, err := json.Marshal(map[string]any{
				"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
				"request": map[string]any{
					"uid":       "705ab4f5-6393-11e8-b7cc-42010a800002",
					"kind":      map[string]any{"group": "", "version": "v1", "kind": "Pod"},
					"resource":  map[string]any{"group": "", "version": "v1", "resource": "pods"},
					"namespace": "default", "operation": "CREATE",
					"object": json.RawMessage(podJSON),
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			ref := NewReference(RefConfigFrom(&cfg), sa)
			got := same(t, ref, NewHandler(program(&cfg), sa), review)

			// The reference against upstream's patch.
			upstream := podJSON
			if p := fx.ExpectedPatch; p != "" {
				patch, err := jsonpatch.DecodePatch([]byte(p))
				if err != nil {
					t.Fatal(err)
				}
				if upstream, err = patch.Apply(podJSON); err != nil {
					t.Fatal(err)
				}
			}
			var want corev1.Pod
			if err := json.Unmarshal(upstream, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got.pod); diff != "" {
				t.Fatalf("reference differs from upstream (-upstream +reference):\n%s", diff)
			}
		})
	}
}
