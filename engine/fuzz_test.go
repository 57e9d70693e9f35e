package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoadBundle feeds arbitrary manifests and Rego through loading and compiling.
// Nothing may panic, and every failure must be a *LoadError that names the bundle
// and gives a reason.
func FuzzLoadBundle(f *testing.F) {
	manifest, _ := os.ReadFile(filepath.Join("..", "policies", ManifestFile))
	files, _ := filepath.Glob(filepath.Join("..", "policies", "*.rego"))
	for _, file := range files {
		if strings.HasSuffix(file, "_test.rego") {
			continue
		}
		src, _ := os.ReadFile(file)
		f.Add(string(manifest), string(src))
	}
	f.Add(testManifestHead+"policies:\n- name: p\n  rule: data.t.m\n", injectRego)
	f.Add(testManifestHead+"policies:\n- name: p\n  match:\n  - name: c\n    expression: object.spec.containers.all(c, c.name != '')\n  rule: data.t.m\n", "package t\nm := []\n")
	f.Add(testManifestHead+"policies:\n- name: p\n  rule: data.t.m\n", "package t\nm := [x] if { x := http.send({}) }\n")
	f.Add(testManifestHead+"grants:\n  paths: ['/spec/**']\npolicies: [{name: a, rule: data.a.b, onError: deny}]\n", "package a\nb := 1\n")
	f.Add("apiVersion: [", "package")
	f.Add(testManifestHead+"policies:\n- name: p\n  match:\n  - name: c\n    expression: '1 +'\n  rule: data.t.m\n", "package t\nm := []\n")
	f.Fuzz(func(t *testing.T, manifest, rego string) {
		b, err := LoadMap("configmap ns/fuzz", map[string]string{ManifestFile: manifest, "fuzz.rego": rego})
		if err == nil {
			_, err = Compile(context.Background(), []*Bundle{b}, Options{})
		}
		if err == nil {
			return
		}
		var le *LoadError
		if errors.As(err, &le) {
			if le.Reason == "" {
				t.Fatalf("a load error without a reason: %#v", le)
			}
			return
		}
		if !strings.Contains(err.Error(), "configmap ns/fuzz") && err.Error() != "no policy bundles to compile" {
			t.Fatalf("error does not name the bundle: %v", err)
		}
	})
}

// FuzzObjectFields checks the hand-written object scanner against encoding/json: for
// every valid JSON object it must find the same keys, each with the same value.
func FuzzObjectFields(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, ` { "a" : "x\"}" , "b":[1,{"c":"]"}], "d":null, "e":true, "f":-1.5e3 } `,
		`{"a":{"b":{"c":[[],{}]}}, "a":2}`, `{"\u0061":"\\"}`, podJSON} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		if err := json.Unmarshal(data, &want); err != nil || want == nil {
			return
		}
		got, err := objectFields(data)
		if err != nil {
			t.Fatalf("objectFields(%q): %v", data, err)
		}
		if len(got) != len(want) {
			t.Fatalf("objectFields(%q) found %d keys, want %d", data, len(got), len(want))
		}
		for k, w := range want {
			var gv, wv any
			if err := json.Unmarshal(got[k], &gv); err != nil {
				t.Fatalf("key %q: value %q does not decode: %v", k, got[k], err)
			}
			_ = json.Unmarshal(w, &wv)
			if !reflect.DeepEqual(gv, wv) {
				t.Fatalf("key %q: got %q, want %q", k, got[k], w)
			}
		}
	})
}

// objectFields collects forEachField's fields in a map (a later duplicate key wins,
// as in encoding/json), for FuzzObjectFields to compare with encoding/json.
func objectFields(data []byte) (map[string]json.RawMessage, error) {
	fields := map[string]json.RawMessage{}
	err := forEachField(data, func(key string, value json.RawMessage) {
		fields[strings.Clone(key)] = value
	})
	if err != nil {
		return nil, err
	}
	return fields, nil
}

// FuzzReadPodRef checks ReadPodRef against encoding/json on every valid JSON object:
// the same namespace and ServiceAccount name, and an error exactly when the fields
// have the wrong type.
func FuzzReadPodRef(f *testing.F) {
	for _, s := range []string{`{}`, podJSON, `{"spec":{"serviceAccountName":"a\"b"},"metadata":{"namespace":"n"}}`,
		`{"spec":{"serviceAccountName":1}}`, `{"metadata":null}`, `{"spec":{"serviceAccountName":"x"},"spec":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
			return
		}
		// The reference: exact keys (maps, not struct fields, which encoding/json
		// matches case-insensitively), last duplicate wins.
		str := func(parent json.RawMessage, key string) (string, bool) {
			if parent == nil || string(parent) == "null" {
				return "", true
			}
			var m map[string]json.RawMessage
			if json.Unmarshal(parent, &m) != nil || m == nil {
				return "", false
			}
			var s *string
			if v, ok := m[key]; ok && json.Unmarshal(v, &s) != nil {
				return "", false
			}
			if s == nil {
				return "", true
			}
			return *s, true
		}
		ns, nsOK := str(obj["metadata"], "namespace")
		sa, saOK := str(obj["spec"], "serviceAccountName")
		got, err := ReadPodRef(data)
		if (err == nil) != (nsOK && saOK) {
			t.Fatalf("ReadPodRef(%q) error %v, reference ok %v %v", data, err, nsOK, saOK)
		}
		if err != nil {
			return
		}
		if got != (PodRef{Namespace: ns, ServiceAccountName: sa}) {
			t.Fatalf("ReadPodRef(%q) = %+v, want namespace %q, serviceAccountName %q", data, got, ns, sa)
		}
	})
}

// FuzzSplit checks the one-pass splitter (splitAt, through splitTrusted) against the
// per-level one (splitInto) on every valid JSON object, with the default bundle's
// projection and one with a deeper path: the same leaves, whatever their order, and
// an error from both or neither.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{`{}`, podJSON, `{"metadata":{"name":"a","name":"b"}}`, `{"spec":[1],"metadata":null}`,
		`{"a":{"b":{"c":[[],{}]},"b":{"c":1}}, "spec":{"containers":[{"name":"x"}]}}`, `{"a":{"b":{"c":{"d":"}"}}}}`} {
		f.Add([]byte(s))
	}
	prog := compileDefault(f, Options{})
	deep := newProjection()
	deep.add([]string{"a", "b", "c"})
	deep.add([]string{"spec", "serviceAccountName"})
	deep.children["spec"].shallow = map[string]shallowDecoder{"containers": decodeContainersShallow}
	deep.freeze()
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || bytes.TrimLeft(data, " \t\r\n")[0] != '{' {
			return
		}
		for _, p := range []*projection{prog.proj, deep} {
			got, gotErr := splitTrusted(data, p)
			var want []leaf
			wantErr := splitInto(data, p, &want)
			if (gotErr != nil) != (wantErr != nil) {
				t.Fatalf("split(%q): one-pass error %v, per-level error %v", data, gotErr, wantErr)
			}
			if len(got) != len(want) || !reflect.DeepEqual(leafSet(got), leafSet(want)) {
				t.Fatalf("split(%q):\none-pass  %v\nper-level %v", data, leafSet(got), leafSet(want))
			}
		}
	})
}

// leafSet maps each leaf's path to its raw JSON (and whether it is decoded shallow).
func leafSet(leaves []leaf) map[string]string {
	out := map[string]string{}
	for _, l := range leaves {
		out[strings.Join(l.path, ".")] = fmt.Sprintf("%s shallow=%t", l.raw, l.shallow != nil)
	}
	return out
}

// FuzzShallowDecoders checks the shallow list decoders against a full decode of the
// same JSON: every container keeps its name and its env, envFrom and volumeMounts
// (raw until read, then equal), every volume all its keys (the name decoded, the
// others raw and equal); anything that is not a list of objects is as sent.
func FuzzShallowDecoders(f *testing.F) {
	for _, s := range []string{`[]`, `null`, `{}`, `[null, 1, "x"]`,
		`[{"name":"a","image":"i","env":[{"name":"A","value":"1"}],"volumeMounts":null,"ports":[{"containerPort":80}]}]`,
		`[{"name":"a","name":null,"env":[],"env":[{"name":"B"}],"Name":"x","envFrom":[{"configMapRef":{"name":"c"}}]}]`,
		`[{"name":"v","projected":{"sources":[]}},{"name":null,"configMap":{"name":"c"},"configMap":{"name":"d"}},{"csi":{}}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		full, err := decodeValue(data)
		if err != nil { // valid JSON out of range (1e700): the decoders must only not panic
			_, _ = decodeContainersShallow(data)
			_, _ = decodeVolumesShallow(data)
			return
		}
		for _, dec := range []struct {
			name     string
			decode   shallowDecoder
			keep     func(string) bool
			dropNull bool // a null name or list is as absent
		}{
			{"containers", decodeContainersShallow, func(k string) bool {
				return k == "name" || k == "env" || k == "envFrom" || k == "volumeMounts"
			}, true},
			{"volumes", decodeVolumesShallow, func(string) bool { return true }, false},
		} {
			got, err := dec.decode(data)
			if err != nil {
				t.Fatalf("%s(%s): %v", dec.name, data, err)
			}
			if want := shallowView(full, dec.keep, dec.dropNull); !reflect.DeepEqual(fullView(t, got), want) {
				t.Fatalf("%s(%s):\ngot  %#v\nwant %#v", dec.name, data, fullView(t, got), want)
			}
		}
	})
}

// shallowView is a fully decoded list with each object item cut to the kept keys,
// without those whose value is null when dropNull.
func shallowView(full any, keep func(string) bool, dropNull bool) any {
	list, ok := full.([]any)
	if !ok {
		return full
	}
	out := make([]any, len(list))
	for i, item := range list {
		obj, ok := item.(map[string]any)
		if !ok {
			out[i] = item
			continue
		}
		m := map[string]any{}
		for k, v := range obj {
			if keep(k) && (v != nil || !dropNull) {
				m[k] = v
			}
		}
		out[i] = m
	}
	return out
}

// fullView decodes what a shallow decoder left raw (rawList, json.RawMessage).
func fullView(t *testing.T, v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fullView(t, e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = fullView(t, e)
		}
		return out
	case *rawList:
		d, err := x.decode()
		if err != nil {
			t.Fatal(err)
		}
		return d
	case json.RawMessage:
		d, err := decodeValue(x)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return v
}

// A name that does not decode (valid JSON out of range) fails the list, as a full
// decode of it would; a field error is not lost to the object scan's own result.
func TestShallowDecodersReportNameErrors(t *testing.T) {
	for name, dec := range map[string]shallowDecoder{"containers": decodeContainersShallow, "volumes": decodeVolumesShallow} {
		if _, err := dec([]byte(`[{"name":1e700}]`)); err == nil {
			t.Errorf("%s: a name of 1e700 decoded without an error", name)
		}
	}
}
