package engine

import (
	"encoding/json"
	"testing"
)

// marshalPatch must write what encoding/json would for the same ops (values with
// sorted keys, "value" kept when null or false, dropped on remove), since the API
// server and the memo compare and share these bytes.
func TestMarshalPatchMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want string
	}{
		{"none", nil, `[]`},
		{"remove has no value", []Op{{Op: "remove", Path: "/metadata/labels/a"}}, `[{"op":"remove","path":"/metadata/labels/a"}]`},
		{"null and false kept", []Op{{Op: "add", Path: "/a", Value: nil}, {Op: "replace", Path: "/b", Value: false}},
			`[{"op":"add","path":"/a","value":null},{"op":"replace","path":"/b","value":false}]`},
		{"keys sorted", []Op{{Op: "add", Path: "/spec/volumes/0", Value: map[string]any{"projected": map[string]any{"z": 1, "a": "x"}, "name": "aws-iam-token"}}},
			`[{"op":"add","path":"/spec/volumes/0","value":{"name":"aws-iam-token","projected":{"a":"x","z":1}}}]`},
		{"escaped path", []Op{{Op: "add", Path: "/metadata/annotations/a\"b\\c\u00e9", Value: "v\n"}},
			`[{"op":"add","path":"/metadata/annotations/a\"b\\cé","value":"v\n"}]`},
		{"HTML characters escaped", []Op{{Op: "add", Path: "/metadata/labels/a<b>&c", Value: "<x>"}},
			`[{"op":"add","path":"/metadata/labels/a\u003cb\u003e\u0026c","value":"\u003cx\u003e"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := marshalPatch(tt.ops)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("marshalPatch = %s\nwant           %s", got, tt.want)
			}
			var a, b any
			if err := json.Unmarshal(got, &a); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			_ = json.Unmarshal([]byte(tt.want), &b)
			one, _ := json.Marshal(a)
			two, _ := json.Marshal(b)
			if string(one) != string(two) {
				t.Errorf("decodes to %s, want %s", one, two)
			}
		})
	}
}
