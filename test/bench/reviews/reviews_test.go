package reviews

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
)

func TestPrepareBenchdataRoundTrip(t *testing.T) {
	for _, size := range benchdata.Sizes {
		orig := benchdata.Review(size)
		tpl, err := Prepare(orig, Options{Vary: true})
		if err != nil {
			t.Fatal(err)
		}
		tpl.SetUID(0x42010a800002)
		tpl.SetTemplate(0x7d4b9c5f8)
		if !bytes.Equal(tpl.Body, orig) {
			t.Fatalf("%s: prepared body with the original UID and hash differs from benchdata's", size)
		}
		b := Benchdata(size)
		if !bytes.Equal(b.Body, orig) || len(b.uid) != 1 || len(b.hash) != 3 {
			t.Fatalf("%s: Benchdata: uid %v hash %v", size, b.uid, b.hash)
		}
	}
}

func TestPrepareNamespaceAndNoHash(t *testing.T) {
	review := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","namespace":"a","object":{"metadata":{"name":"p"},"spec":{}}}}`)
	tpl, err := Prepare(review, Options{Namespace: "other", Vary: true})
	if err != nil {
		t.Fatal(err)
	}
	tpl.SetUID(7)
	tpl.SetTemplate(0xabc)
	var m struct {
		Request struct {
			UID       string `json:"uid"`
			Namespace string `json:"namespace"`
			Object    struct {
				Metadata struct {
					Namespace    string            `json:"namespace"`
					GenerateName string            `json:"generateName"`
					Labels       map[string]string `json:"labels"`
				} `json:"metadata"`
			} `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(tpl.Body, &m); err != nil {
		t.Fatal(err)
	}
	r := m.Request
	if r.UID != "00000000-0000-4000-8000-"+UIDSuffix(7) || r.Namespace != "other" || r.Object.Metadata.Namespace != "other" ||
		r.Object.Metadata.GenerateName != "pod-0000000abc-" || r.Object.Metadata.Labels["pod-template-hash"] != "0000000abc" {
		t.Fatalf("unexpected review: %s", tpl.Body)
	}
}
