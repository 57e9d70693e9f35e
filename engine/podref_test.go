package engine

import (
	"context"
	"strings"
	"testing"
)

func TestReadPodRef(t *testing.T) {
	tests := []struct {
		name, pod string
		want      PodRef
		wantErr   string
	}{
		{"both", `{"metadata":{"name":"p","namespace":"ns"},"spec":{"containers":[{"name":"a","env":[{"name":"x","value":"}\"{"}]}],"serviceAccountName":"sa"}}`,
			PodRef{Namespace: "ns", ServiceAccountName: "sa"}, ""},
		{"escaped", `{"spec":{"serviceAccountName":"s\u0061"}}`, PodRef{ServiceAccountName: "sa"}, ""},
		{"missing", `{"metadata":{},"spec":{}}`, PodRef{}, ""},
		{"nulls", `{"metadata":null,"spec":{"serviceAccountName":null}}`, PodRef{}, ""},
		{"whitespace", " {\n \"spec\" : { \"serviceAccountName\" : \"sa\" } } ", PodRef{ServiceAccountName: "sa"}, ""},
		{"not an object", `[1]`, PodRef{}, "expected a JSON object"},
		{"name not a string", `{"spec":{"serviceAccountName":5}}`, PodRef{}, "spec.serviceAccountName: must be a string"},
		{"namespace not a string", `{"metadata":{"namespace":{}}}`, PodRef{}, "metadata.namespace: must be a string"},
		{"spec not an object", `{"spec":"x"}`, PodRef{}, "spec: must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPodRef([]byte(tt.pod))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ReadPodRef = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// Program.Scan reads the same PodRef as ReadPodRef, whatever the program's projection
// holds of metadata and spec (their two fields, or the whole subtree), and Evaluate
// gives the same result with the scan as without.
func TestScan(t *testing.T) {
	programs := map[string]*Program{
		"fields": compileT(t, bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
m := [{"op": "set-label", "key": "sa", "value": input.object.spec.serviceAccountName}]
`})),
		"whole metadata and spec": compileT(t, bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
m := [{"op": "set-label", "key": "n", "value": format_int(count(input.object.metadata) + count(input.object.spec), 10)}]
`})),
	}
	pods := []string{
		podJSON,
		`{"metadata":{"name":"p","namespace":"ns"},"spec":{"containers":[{"name":"a"}],"serviceAccountName":"sa"}}`,
		`{"metadata":{"namespace":null},"spec":{"serviceAccountName":"s\u0061","containers":[]}}`,
		`{"metadata":{"namespace":5},"spec":{}}`,
		`{"metadata":"x","spec":{}}`,
		`{"spec":{"serviceAccountName":[]}}`,
		`[]`,
	}
	for name, p := range programs {
		for _, pod := range pods {
			want, wantErr := ReadPodRef([]byte(pod))
			scan, err := p.Scan([]byte(pod))
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("%s: Scan(%s) error %v, ReadPodRef error %v", name, pod, err, wantErr)
			}
			if err != nil {
				continue
			}
			if scan.Ref != want {
				t.Fatalf("%s: Scan(%s).Ref = %+v, want %+v", name, pod, scan.Ref, want)
			}
			req := saRequest()
			req.Object = []byte(pod)
			plain, err1 := p.Evaluate(context.Background(), req, EvalOptions{})
			req.Scan = scan
			scanned, err2 := p.Evaluate(context.Background(), req, EvalOptions{})
			if (err1 != nil) != (err2 != nil) || (err1 == nil && mustJSON(plain.Patch) != mustJSON(scanned.Patch)) {
				t.Fatalf("%s: %s: with the scan %v %v, without %v %v", name, pod, scanned, err2, plain, err1)
			}
		}
	}
	// A scan of other bytes (or by another program) is not used.
	p := programs["fields"]
	scan, err := p.Scan([]byte(podJSON))
	if err != nil {
		t.Fatal(err)
	}
	req := saRequest()
	req.Object = []byte(strings.Replace(podJSON, `"serviceAccountName":"sa"`, `"serviceAccountName":"other"`, 1))
	req.Scan = scan
	res, err := p.Evaluate(context.Background(), req, EvalOptions{})
	if err != nil || !strings.Contains(mustJSON(res.Patch), `"other"`) {
		t.Fatalf("a scan of other bytes was used: %s %v", mustJSON(res.Patch), err)
	}
	if scan.of(scan.object, programs["whole metadata and spec"].proj) {
		t.Fatal("a scan by another program is used")
	}
}
