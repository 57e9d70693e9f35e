package engine

import "testing"

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
