package sources

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

func TestParseRoleMappings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		config   string
		want     RoleMappings
		problems []string // keys
		err      string
	}{
		{name: "empty", config: "", want: RoleMappings{}},
		{name: "whitespace", config: " \n", want: RoleMappings{}},
		{name: "null", config: "null", want: RoleMappings{}},
		{
			name:   "all fields",
			config: `{"ns/sa":{"RoleARN":"arn:a","Audience":"aud","UseRegionalSTS":true,"TokenExpiration":3600}}`,
			want:   RoleMappings{"ns/sa": {RoleARN: "arn:a", Audience: "aud", UseRegionalSTS: true, TokenExpiration: 3600}},
		},
		{
			name:   "field names match case-insensitively, unknown fields are ignored",
			config: `{"ns/a":{"rolearn":"arn:a"},"ns/b":{"roleArn":"arn:b","extra":1}}`,
			want:   RoleMappings{"ns/a": {RoleARN: "arn:a"}, "ns/b": {RoleARN: "arn:b"}},
		},
		{
			name:   "wildcard namespace",
			config: `{"*/sa":{"RoleARN":"arn:w"}}`,
			want:   RoleMappings{"*/sa": {RoleARN: "arn:w"}},
		},
		{
			name:     "key without '/' is skipped (upstream panicked)",
			config:   `{"nosash":{"RoleARN":"arn:x"},"ns/sa":{"RoleARN":"arn:a"}}`,
			want:     RoleMappings{"ns/sa": {RoleARN: "arn:a"}},
			problems: []string{"nosash"},
		},
		{
			name:     "empty namespace or name is skipped",
			config:   `{"/sa":{},"ns/":{},"/":{},"":{}}`,
			want:     RoleMappings{},
			problems: []string{"", "/", "/sa", "ns/"},
		},
		{
			name:     "text after a second '/' is ignored and reported",
			config:   `{"a/b/c":{"RoleARN":"arn:b"}}`,
			want:     RoleMappings{"a/b": {RoleARN: "arn:b"}},
			problems: []string{"a/b/c"},
		},
		{
			name:     "an exact key wins over one with text after a second '/'",
			config:   `{"a/b/c":{"RoleARN":"longer"},"a/b":{"RoleARN":"exact"},"a/b/d":{"RoleARN":"other"}}`,
			want:     RoleMappings{"a/b": {RoleARN: "exact"}},
			problems: []string{"a/b/c", "a/b/d"},
		},
		{name: "invalid JSON", config: `{"ns/sa":`, err: "data.config: not a JSON object"},
		{name: "not an object", config: `["ns/sa"]`, err: "data.config: not a JSON object"},
		{name: "entry not an object", config: `{"ns/sa":"arn"}`, err: `key "ns/sa"`},
		{name: "wrong field type", config: `{"ns/sa":{"TokenExpiration":"1h"}}`, err: `key "ns/sa": field TokenExpiration: expected int64, got a JSON string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, problems, err := ParseRoleMappings(tc.config)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				if got != nil || problems != nil {
					t.Errorf("with an error got %v, %v; want nothing", got, problems)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mappings (-want +got):\n%s", diff)
			}
			var keys []string
			for _, p := range problems {
				keys = append(keys, p.Key)
			}
			if diff := cmp.Diff(tc.problems, keys); diff != "" {
				t.Errorf("problem keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoleMappingsLookup(t *testing.T) {
	m := RoleMappings{"ns/sa": {RoleARN: "exact"}, "*/sa": {RoleARN: "wild"}, "*/only": {RoleARN: "only"}}
	for _, tc := range []struct {
		ns, name string
		want     *engine.ConfigMapEntry
	}{
		{"ns", "sa", &engine.ConfigMapEntry{Key: "ns/sa", RoleARN: "exact"}},
		{"other", "sa", &engine.ConfigMapEntry{Key: "*/sa", Wildcard: true, RoleARN: "wild"}},
		{"ns", "only", &engine.ConfigMapEntry{Key: "*/only", Wildcard: true, RoleARN: "only"}},
		{"ns", "none", nil},
	} {
		if diff := cmp.Diff(tc.want, m.Lookup(tc.ns, tc.name)); diff != "" {
			t.Errorf("Lookup(%s, %s) (-want +got):\n%s", tc.ns, tc.name, diff)
		}
	}
	if got := RoleMappings(nil).Lookup("ns", "sa"); got != nil {
		t.Errorf("nil mappings: Lookup = %+v, want nil", got)
	}
}

// Whatever the ConfigMap holds, parsing neither panics nor yields a key that is not
// "<namespace>/<name>". An error returns nothing (the caller keeps what it had) and is
// one line. Every key of the input is accounted for: an exact "<namespace>/<name>"
// key is kept as it is, anything else is either reported as a problem or (text after
// a second '/') maps its first two segments; Lookup finds every kept key exactly.
func FuzzParseRoleMappings(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"a/b":{}}`, `{"a":{}}`, `{"a/b/c":{"RoleARN":"x"}}`, `{"/":{}}`, `[1]`, `{"a/b":null}`,
		`{"a/b/c":{"RoleARN":"l"},"a/b":{"RoleARN":"e"}}`, `{"a/b":{"RoleARN":"1"},"a/b":{"RoleARN":"2"}}`,
		`{"*/sa":{"roleArn":"w","tokenexpiration":600,"useRegionalSts":true}}`, `{"a/b":{"TokenExpiration":1e3}}`,
		`{"a/b":{"TokenExpiration":"1"}}`, `{"a//b":{}}`, `{"\u002fa/b":{}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, config string) {
		m, problems, err := ParseRoleMappings(config)
		if err != nil {
			if m != nil || problems != nil {
				t.Fatalf("with the error %v got %v, %v; want nothing", err, m, problems)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("the error is not one line: %q", err)
			}
			return
		}
		for k := range m {
			ns, name, ok := strings.Cut(k, "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				t.Errorf("key %q is not <namespace>/<name>", k)
			}
			if e := m.Lookup(ns, name); e == nil || e.Key != k || e.Wildcard {
				t.Errorf("Lookup(%q, %q) = %+v, want the exact entry %q", ns, name, e, k)
			}
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(config), &keys); err != nil {
			return // "" and whitespace: accepted as empty
		}
		reported := map[string]bool{}
		for _, p := range problems {
			if _, ok := keys[p.Key]; !ok {
				t.Errorf("a problem names %q, which is no key of the input", p.Key)
			}
			reported[p.Key] = true
		}
		for k := range keys {
			parts := strings.Split(k, "/")
			exact := len(parts) == 2 && parts[0] != "" && parts[1] != ""
			_, kept := m[k]
			switch {
			case exact && !kept:
				t.Errorf("the key %q is lost", k)
			case exact && reported[k]:
				t.Errorf("the key %q is kept and reported as a problem", k)
			case !exact && !reported[k]:
				t.Errorf("the key %q is neither exact nor reported", k)
			case !exact && len(parts) > 2 && parts[0] != "" && parts[1] != "":
				if _, ok := m[parts[0]+"/"+parts[1]]; !ok {
					t.Errorf("the key %q maps nothing under %q", k, parts[0]+"/"+parts[1])
				}
			}
		}
	})
}

func TestParseIdentities(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       Identities
		err        string
	}{
		{name: "empty", data: "", want: Identities{}},
		{name: "whitespace", data: "\n", want: Identities{}},
		{name: "no identities", data: `{"identities":[]}`, want: Identities{}},
		{
			name: "pairs, unknown fields ignored",
			data: `{"identities":[{"namespace":"a","serviceAccount":"x"},{"namespace":"b","serviceAccount":"y","extra":1}],"version":2}`,
			want: Identities{{"a", "x"}: true, {"b", "y"}: true},
		},
		{name: "missing serviceAccount", data: `{"identities":[{"namespace":"a"}]}`, err: `identities[0]: needs both "namespace" and "serviceAccount"`},
		{name: "invalid JSON", data: `{"identities":`, err: "not a JSON identities document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseIdentities([]byte(tc.data))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("identities (-want +got):\n%s", diff)
			}
		})
	}
	ids := Identities{{"a", "x"}: true}
	if got := ids.Lookup("a", "x"); got == nil || got.Namespace != "a" || got.ServiceAccount != "x" {
		t.Errorf("Lookup(a, x) = %+v", got)
	}
	if got := ids.Lookup("*", "x"); got != nil {
		t.Errorf("Lookup(*, x) = %+v, want nil: no wildcards", got)
	}
}
