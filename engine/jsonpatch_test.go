package engine

import (
	"encoding/json"
	"reflect"
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
		{"a value shared by several ops, then another", sharedValueOps(),
			`[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"A","value":"1"}},{"op":"add","path":"/spec/containers/1/env","value":[{"name":"A","value":"1"}]},` +
				`{"op":"add","path":"/spec/containers/2/env/-","value":{"name":"A","value":"1"}},{"op":"remove","path":"/x"},{"op":"add","path":"/spec/containers/3/env","value":[{"name":"A","value":"1"}]},` +
				`{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"B","value":"2"}},{"op":"add","path":"/y","value":[{"name":"A","value":"1"}]}]`},
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

// appendJSONValue writes the types it handles itself exactly as encoding/json does.
func TestAppendJSONValueMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, false, "", "plain", "quote\" backslash\\ tab\t nl\n", "<html>&", "\u00e9\u2028\x01",
		int64(-42), int64(1) << 53, 7, 1.5, json.Number("12"),
		[]any{}, []any{"a", int64(1), nil, []any{true}},
		map[string]any{}, map[string]any{"z": "last", "a": "first", "m": map[string]any{"b": []any{int64(2)}, "a<": false}},
		map[string]any{"k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5, "k6": 6, "k7": 7, "k8": 8, "k9": 9, "k10": 10},
		[]string{"typed", "slice"}, // not a decoded-JSON type: the goccy fallback
	}
	for _, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendJSONValue([]byte("prefix"), v)
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		if string(got) != "prefix"+string(want) {
			t.Errorf("%#v:\n got %s\nwant prefix%s", v, got, want)
		}
	}
}

// sharedValueOps gives one env item (and one list of it) to several ops, as add-env to
// several containers does, with a remove, another item and a different list of the
// same contents in between.
func sharedValueOps() []Op {
	item := map[string]any{"name": "A", "value": "1"}
	list := []any{item}
	return []Op{
		{Op: "add", Path: "/spec/containers/0/env/-", Value: item},
		{Op: "add", Path: "/spec/containers/1/env", Value: list},
		{Op: "add", Path: "/spec/containers/2/env/-", Value: item},
		{Op: "remove", Path: "/x"},
		{Op: "add", Path: "/spec/containers/3/env", Value: list},
		{Op: "add", Path: "/spec/containers/0/env/-", Value: map[string]any{"name": "B", "value": "2"}},
		{Op: "add", Path: "/y", Value: []any{map[string]any{"name": "A", "value": "1"}}},
	}
}

// The memo's compact ops point into the patch bytes; with shared values each must
// still hold its own op's value.
func TestCompactOpsWithSharedValues(t *testing.T) {
	ops := sharedValueOps()
	b, compact, err := marshalPatchValues(ops, true)
	if err != nil {
		t.Fatal(err)
	}
	again, err := marshalPatch(compact)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(b) {
		t.Fatalf("compact ops encode to %s\nwant                 %s", again, b)
	}
}

func TestPointer(t *testing.T) {
	for _, tc := range []struct {
		segs []string
		want string
	}{
		{[]string{"spec", "containers", "0", "env", "-"}, "/spec/containers/0/env/-"},
		{[]string{"metadata", "labels", "eks.amazonaws.com/pod-identity"}, "/metadata/labels/eks.amazonaws.com~1pod-identity"},
		{[]string{"metadata", "annotations", "a~b/c"}, "/metadata/annotations/a~0b~1c"},
		{[]string{""}, "/"},
	} {
		got := pointer(tc.segs...)
		if got != tc.want {
			t.Errorf("pointer(%q) = %q, want %q", tc.segs, got, tc.want)
		}
		back, err := splitPointer(got)
		if err != nil || !reflect.DeepEqual(back, tc.segs) {
			t.Errorf("splitPointer(%q) = %q, %v; want %q", got, back, err, tc.segs)
		}
	}
}
