package admission

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"sigs.k8s.io/yaml"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
	"github.com/pod-identity-webhook/pod-identity-webhook/sources"
)

var (
	defaultProgramOnce sync.Once
	defaultProgram     *engine.Program
)

func testAdmitter(t testing.TB) *Admitter {
	defaultProgramOnce.Do(func() {
		b, err := engine.LoadFS(policies.FS, "embedded default bundle")
		if err != nil {
			t.Fatal(err)
		}
		defaultProgram, err = engine.Compile(context.Background(), []*engine.Bundle{b}, engine.Options{Params: map[string]any{
			"annotationPrefix": "eks.amazonaws.com", "tokenAudience": "sts.amazonaws.com",
			"tokenMountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "tokenExpiration": 86400,
			"awsDefaultRegion": "us-west-2", "stsRegionalEndpoint": true,
			"containerCredentialsAudience": "pods.eks.amazonaws.com", "containerCredentialsTokenMountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
			"containerCredentialsTokenVolumeName": "eks-pod-identity-token", "containerCredentialsTokenPath": "eks-pod-identity-token",
			"containerCredentialsFullURI": "http://169.254.170.23/v1/credentials",
		}})
		if err != nil {
			t.Fatal(err)
		}
	})
	if defaultProgram == nil {
		t.Fatal("default bundle did not compile")
	}
	role := map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/r"}
	return &Admitter{
		Program: func() *engine.Program { return defaultProgram },
		Sources: &sources.Static{
			ServiceAccounts: []*engine.ServiceAccount{
				{Name: "default", Namespace: "default", Annotations: role},
				{Name: "app", Namespace: "team", Annotations: role},
			},
			IdentitySet: sources.Identities{{"cc", "default"}: true},
		},
	}
}

// reviewSeeds wraps the upstream conformance pods in AdmissionReviews.
func reviewSeeds(t testing.TB) [][]byte {
	files, _ := filepath.Glob("../test/conformance/testdata/upstream/*.pod.yaml")
	var seeds [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pod, err := yaml.YAMLToJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, ns := range []string{"default", "cc"} {
			review, _ := json.Marshal(map[string]any{
				"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
				"request": map[string]any{"uid": "u", "namespace": ns, "operation": "CREATE", "object": json.RawMessage(pod)},
			})
			seeds = append(seeds, review)
		}
	}
	return seeds
}

// FuzzAdmissionReview feeds arbitrary bodies through the decoder and the whole
// decision path with the default bundle. It must never panic, and whenever it mutates,
// the patch, applied by an independent JSON Patch implementation, must give exactly
// the engine's pod.
func FuzzAdmissionReview(f *testing.F) {
	for _, s := range reviewSeeds(f) {
		f.Add(s)
	}
	for _, s := range []string{``, `{}`, `null`, `[]`, `{"request":null}`, `{"request":{"object":"pod"}}`,
		`{"request":{"namespace":"default","object":{"spec":{"serviceAccountName":"default","containers":"x"}}}}`,
		`{"request":{"namespace":"default","object":{"spec":{"serviceAccountName":"default","containers":[{"name":"a","env":{"x":1}}]}}}}`,
		`{"request":{"namespace":"default","object":{"metadata":{"labels":null},"spec":{"serviceAccountName":"default","volumes":null,"containers":[{"name":"a","volumeMounts":null,"env":null}]}}}}`,
		`{"request":{"namespace":"default","object":{"spec":{"serviceAccountName":"default","containers":[{"name":"a"},{"name":"a"}],"initContainers":[{"name":"a"}]}}}}`,
		`{"request":{"namespace":"cc","object":{"metadata":{"labels":"x"},"spec":{"serviceAccountName":"default","containers":[{"name":"a"}]}}}}`,
	} {
		f.Add([]byte(s))
	}
	adm := testAdmitter(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		review, err := DecodeReview(body)
		if err != nil || review.Request == nil || len(review.Request.Object.Raw) == 0 {
			return
		}
		object := review.Request.Object.Raw
		d, err := adm.Admit(context.Background(), Attributes(review.Request), object)
		if err != nil {
			var ie *engine.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Admit failed with a non-input error: %v", err)
			}
			return
		}
		if d.Patch == nil {
			return
		}
		patch, err := jsonpatch.DecodePatch(d.Patch)
		if err != nil {
			t.Fatalf("the patch does not decode: %v\n%s", err, d.Patch)
		}
		applied, err := patch.Apply(object)
		if err != nil {
			t.Fatalf("the patch does not apply to the received pod: %v\npatch %s\npod %s", err, d.Patch, object)
		}
		var got, want any
		_ = json.Unmarshal(applied, &got)
		pod, err := d.Result.Pod()
		if err != nil {
			t.Fatalf("Pod(): %v", err)
		}
		own, _ := json.Marshal(pod)
		_ = json.Unmarshal(own, &want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("patched pod differs from the engine's pod\npatched: %s\nengine:  %s", applied, own)
		}
	})
}

// FuzzDecodeReview checks DecodeReviewInto, which copies the object into the caller's
// buffer, against DecodeReview: for every body, the same error or the same review,
// with a buffer large enough, one too small, and none; and the object in the buffer
// when it fits.
func FuzzDecodeReview(f *testing.F) {
	for _, s := range reviewSeeds(f) {
		f.Add(s)
	}
	for _, s := range []string{``, `{}`, `null`, `[]`, `{"request":null}`, `{"request":{}}`, `{"request":{"object":"pod"}}`,
		`{"request":{"uid":"u","object":{"a":1},"oldObject":null,"options":{"x":1}}}`, `{"request":{"object":null}}`,
		`{"request":{"object":{"a":1}},"request":{"oldObject":{"b":[2]}}}`, `{"request":{"object":{"a":tru}}}`,
		`{"apiVersion":"v1","kind":"K","request":{"object" : {"metadata":{"name":"n"}} ,"OBJECT":{"x":"y"}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, wantErr := DecodeReview(body)
		for _, size := range []int{len(body), len(body) / 2, 0} {
			buf := make([]byte, size)
			got, gotErr := DecodeReviewInto(body, buf)
			if (gotErr != nil) != (wantErr != nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
				t.Fatalf("DecodeReviewInto(%q, %d bytes): error %v, DecodeReview's %v", body, size, gotErr, wantErr)
			}
			if gotErr != nil {
				continue
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if !reflect.DeepEqual(got, want) || string(g) != string(w) {
				t.Fatalf("DecodeReviewInto(%q, %d bytes) =\n%s\nDecodeReview:\n%s", body, size, g, w)
			}
			if got.Request == nil {
				continue
			}
			if obj := got.Request.Object.Raw; size == len(body) && len(obj) > 0 && &obj[0] != &buf[:1][0] {
				t.Fatalf("DecodeReviewInto(%q): the object is not in the buffer", body)
			}
		}
	})
}
