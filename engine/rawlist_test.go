package engine

import (
	"context"
	"hash/maphash"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestRawListNames(t *testing.T) {
	tests := []struct {
		raw   string
		names []string
		ok    bool
	}{
		{`[]`, nil, true},
		{` [ {"name":"a"} , {"value":"x","name":"b"}, {"value":"no name"}, 5, {"name":null}, {"name":"c\u0064"}, {"name":7} ] `, []string{"a", "b", "cd"}, true},
		{`{"name":"a"}`, nil, false},
	}
	for _, tt := range tests {
		names, ok := (&rawList{raw: []byte(tt.raw)}).names()
		if ok != tt.ok || strings.Join(names, ",") != strings.Join(tt.names, ",") {
			t.Errorf("names(%s) = %q, %v; want %q, %v", tt.raw, names, ok, tt.names, tt.ok)
		}
	}
	// Appended items count too, after the raw ones.
	l := &rawList{raw: []byte(`[{"name":"a"}]`), appended: []any{map[string]any{"name": "b"}, "not an object"}}
	if names, ok := l.names(); !ok || strings.Join(names, ",") != "a,b" {
		t.Errorf("names with appended items = %q, %v", names, ok)
	}
	if v, err := l.decode(); err != nil || mustJSON(v) != `[{"name":"a"},{"name":"b"},"not an object"]` {
		t.Errorf("decode with appended items = %s, %v", mustJSON(v), err)
	}
}

// Container lists stay raw until read; every way of reading or changing them sees
// the decoded list. These evaluations run without explain, which decodes everything.
func TestRawListsReadAndChanged(t *testing.T) {
	tests := []struct {
		name, rule, wantPatch, wantErr string
	}{
		{"set-env replaces an entry of a raw env",
			`[{"op": "set-env", "container": "app", "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]}]`,
			`[{"op":"replace","path":"/spec/containers/0/env/0","value":{"name":"A","value":"2"}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"B","value":"3"}}]`, ""},
		{"set-env of an equal entry of a raw env is a no-op",
			`[{"op": "set-env", "container": "app", "env": [{"name": "A", "value": "1"}]}]`, `[]`, ""},
		{"json-patch test against a raw env passes",
			`[{"op": "json-patch", "patch": [{"op": "test", "path": "/spec/containers/0/env", "value": [{"name": "A", "value": "1"}]}, {"op": "add", "path": "/spec/containers/0/env/0", "value": {"name": "Z", "value": "0"}}]}]`,
			`[{"op":"test","path":"/spec/containers/0/env","value":[{"name":"A","value":"1"}]},{"op":"add","path":"/spec/containers/0/env/0","value":{"name":"Z","value":"0"}}]`, ""},
		{"json-patch test against a raw env fails",
			`[{"op": "json-patch", "patch": [{"op": "test", "path": "/spec/containers/0/env/0/value", "value": "2"}]}]`, `[]`, "test failed"},
		{"add-env appends to a raw env, then set-env sees the appended entry",
			`[{"op": "add-env", "container": "app", "env": [{"name": "B", "value": "1"}]}, {"op": "set-env", "container": "app", "env": [{"name": "B", "value": "1"}]}]`,
			`[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"B","value":"1"}}]`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": "package t\nm := " + tt.rule + "\n"})
			p := compileT(t, b)
			res, err := p.Evaluate(context.Background(), saRequest(), EvalOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := mustJSON(res.Patch); got != tt.wantPatch && !(tt.wantPatch == "[]" && got == "null") {
				t.Errorf("patch %s\nwant  %s", got, tt.wantPatch)
			}
			failed := res.Failed()
			if tt.wantErr == "" && len(failed) > 0 || tt.wantErr != "" && (len(failed) != 1 || !strings.Contains(failed[0].Error, tt.wantErr)) {
				t.Fatalf("failures %+v, want %q", failed, tt.wantErr)
			}
			obj, err := res.Object()
			if err != nil {
				t.Fatal(err)
			}
			if _, raw := lookupRaw(obj, "spec", "containers", "0", "env"); raw {
				t.Fatal("Result.Object left a raw list")
			}
		})
	}
}

// lookupRaw says whether the value at segs is still a rawList.
func lookupRaw(doc map[string]any, segs ...string) (any, bool) {
	parent, ok := lookup(doc, segs[:len(segs)-1]...)
	if !ok {
		return nil, false
	}
	m, _ := parent.(map[string]any)
	v := m[segs[len(segs)-1]]
	_, raw := v.(*rawList)
	return v, raw
}

// The name sets of raw lists are cached by their bytes (nameSetCache): the same set
// for the same bytes, built from a copy (the request's bytes are reused afterwards),
// never for a list with appended items, and never for other bytes of the same hash.
func TestNameSetCache(t *testing.T) {
	c := newNameSetCache(8)
	body := []byte(`[{"name":"AWS_REGION","value":"x"},{"name":"B"}]`)
	want := ast.SetTerm(ast.StringTerm("AWS_REGION"), ast.StringTerm("B"))
	first := c.nameSet(&rawList{raw: body})
	if !first.Equal(want) {
		t.Fatalf("set = %v, want %v", first, want)
	}
	// The request's bytes are reused for another body of the same length.
	copy(body, `[{"name":"XXX_YYYYYY","value":"x"},{"name":"C"}]`)
	if !first.Equal(want) {
		t.Fatalf("the cached set changed with the request's bytes: %v", first)
	}
	again := c.nameSet(&rawList{raw: []byte(`[{"name":"AWS_REGION","value":"x"},{"name":"B"}]`)})
	if again != first {
		t.Fatal("the same bytes did not give the cached set")
	}
	if got := c.nameSet(&rawList{raw: body}); !got.Equal(ast.SetTerm(ast.StringTerm("XXX_YYYYYY"), ast.StringTerm("C"))) {
		t.Fatalf("other bytes gave %v", got)
	}
	// Appended items are part of the set, and such a list is not cached.
	appended := &rawList{raw: []byte(`[{"name":"B"}]`), appended: []any{map[string]any{"name": "D"}}}
	if got := c.nameSet(appended); !got.Equal(ast.SetTerm(ast.StringTerm("B"), ast.StringTerm("D"))) {
		t.Fatalf("list with appended items gave %v", got)
	}
	if got := c.nameSet(&rawList{raw: []byte(`[{"name":"B"}]`)}); !got.Equal(ast.SetTerm(ast.StringTerm("B"))) {
		t.Fatalf("the list without its appended items gave %v", got)
	}
	// An entry under the same hash for other bytes (a collision) is not used.
	raw := []byte(`[{"name":"E"}]`)
	c.cache.Add(maphash.Bytes(c.seed, raw), nameSetEntry{raw: `[{"name":"F"}]`, set: ast.SetTerm(ast.StringTerm("F"))})
	if got := c.nameSet(&rawList{raw: raw}); !got.Equal(ast.SetTerm(ast.StringTerm("E"))) {
		t.Fatalf("a colliding entry was used: %v", got)
	}
}
