package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/test/bench"
)

// FuzzAnnotations is a differential test of the annotation parsers as the default
// bundle uses them, end to end: the pod annotations skip-containers and
// token-expiration and the ServiceAccount annotations token-expiration and
// sts-regional-endpoints get arbitrary values (and a container an arbitrary name, so
// that skip lists can name it), and the pod the real handler (default bundle, Rego
// built-ins) produces must equal, field for field, the pod of test/bench's plain-Go
// reference, which parses those annotations exactly as upstream does
// (encoding/csv's first record, strconv.ParseInt base 10, strconv.ParseBool).
func FuzzAnnotations(f *testing.F) {
	const all = 0xff
	for _, s := range []struct {
		skip, podExp, saExp, regional, name string
		present                             uint8
	}{
		{"", "", "", "", "extra", 0},
		{"app", "3600", "7200", "true", "extra", all},
		{"app,side", "-5", "86400", "1", "extra", all},
		{"a, side", "600", "599", "T", " side", all},
		{`"app,init",extra`, "1h", "3600s", "yes", "app,init", all},
		{`a"b,app`, "+900", " 900", "FALSE", "extra", all},
		{"\napp", "9223372036854775807", "9223372036854775808", "0", "extra", all},
		{"init\r\nside", "007", "-9223372036854775808", "True", "extra", all},
		{`""`, "0", "1_000", "tRuE", "", all},
		{"extra,", "", "", "", "extra", 0b0001},
		{"", "600", "", "f", "", 0b1010},
	} {
		f.Add(s.skip, s.podExp, s.saExp, s.regional, s.name, s.present)
	}
	cfg := bench.BenchConfig()
	prog, err := bench.CompileDefault(context.Background(), cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, skip, podExp, saExp, regional, name string, present uint8) {
		const prefix = "eks.amazonaws.com/"
		sa := &engine.ServiceAccount{Name: "app", Namespace: "fuzz", UID: "u", ResourceVersion: "1",
			Annotations: map[string]string{prefix + "role-arn": "arn:aws:iam::111122223333:role/fuzz"}}
		if present&0b0100 != 0 {
			sa.Annotations[prefix+"token-expiration"] = saExp
		}
		if present&0b1000 != 0 {
			sa.Annotations[prefix+"sts-regional-endpoints"] = regional
		}
		pod := corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "fuzz", Annotations: map[string]string{}},
			Spec: corev1.PodSpec{
				ServiceAccountName: "app",
				InitContainers:     []corev1.Container{{Name: "init", Image: "i"}},
				Containers: []corev1.Container{
					{Name: "app", Image: "a", Env: []corev1.EnvVar{{Name: "KEEP", Value: "1"}}},
					{Name: "side", Image: "s"},
				},
			},
		}
		if name != "" && name != "init" && name != "app" && name != "side" {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: name, Image: "x"})
		}
		if present&0b0001 != 0 {
			pod.Annotations[prefix+"skip-containers"] = skip
		}
		if present&0b0010 != 0 {
			pod.Annotations[prefix+"token-expiration"] = podExp
		}
		object, err := json.Marshal(&pod)
		if err != nil {
			t.Fatal(err)
		}
		review, _ := json.Marshal(map[string]any{
			"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
			"request": map[string]any{"uid": "u", "namespace": "fuzz", "operation": "CREATE",
				"kind":   map[string]string{"group": "", "version": "v1", "kind": "Pod"},
				"object": json.RawMessage(object)},
		})
		want := admitted(t, bench.NewReference(bench.RefConfigFrom(cfg), sa), review, object)
		got := admitted(t, bench.NewHandler(prog, sa), review, object)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("the engine's pod differs from the reference's (-reference +engine):\n%s\npod annotations %q, ServiceAccount annotations %q",
				diff, pod.Annotations, sa.Annotations)
		}
	})
}

// admitted sends review to h and returns the received pod with the answer's patch
// applied.
func admitted(t *testing.T, h http.Handler, review, object []byte) *corev1.Pod {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
		} `json:"response"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response %s: %v", rec.Body, err)
	}
	if !out.Response.Allowed {
		t.Fatalf("not allowed: %s", rec.Body)
	}
	result := object
	if len(out.Response.Patch) > 0 {
		p, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatalf("patch %s: %v", out.Response.Patch, err)
		}
		if result, err = p.Apply(object); err != nil {
			t.Fatalf("applying %s: %v", out.Response.Patch, err)
		}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(result, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}
