package engine

import (
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The fixed inputs' Rego values are built directly (toValue); they must be exactly
// what converting the Go values CEL sees (toMap) gives.
func TestFixedInputValues(t *testing.T) {
	attrs := PodCreate("ns", "p")
	attrs.UserInfo = UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller", UID: "u", Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	attrs.DryRun = true
	for _, tc := range []struct {
		name     string
		got      ast.Value
		fromMaps any
	}{
		{"request", attrs.toValue(nil), attrs.toMap()},
		{"request without groups", Attributes{Operation: "CREATE"}.toValue(nil), Attributes{Operation: "CREATE"}.toMap()},
		{"request fields read", attrs.toValue([]string{"namespace", "userInfo"}), map[string]any{"namespace": "ns",
			"userInfo": map[string]any{"username": attrs.UserInfo.Username, "uid": "u", "groups": []any{"system:serviceaccounts", "system:authenticated"}}}},
		{"no request field read", attrs.toValue([]string{}), map[string]any{}},
		{"no namespace", (*NamespaceObject)(nil).toValue(), (*NamespaceObject)(nil).toMap()},
		{"namespace", (&NamespaceObject{Name: "ns", Labels: map[string]string{"a": "1"}}).toValue(),
			(&NamespaceObject{Name: "ns", Labels: map[string]string{"a": "1"}}).toMap()},
		{"no identities", Identities{}.toValue(), Identities{}.toMap()},
		{"identities", Identities{ContainerCredentials: &ContainerCredentialsIdentity{Namespace: "ns", ServiceAccount: "sa"},
			ConfigMap: &ConfigMapEntry{Key: "*/sa", Wildcard: true, RoleARN: "arn", Audience: "sts", UseRegionalSTS: true, TokenExpiration: 3600}}.toValue(),
			Identities{ContainerCredentials: &ContainerCredentialsIdentity{Namespace: "ns", ServiceAccount: "sa"},
				ConfigMap: &ConfigMapEntry{Key: "*/sa", Wildcard: true, RoleARN: "arn", Audience: "sts", UseRegionalSTS: true, TokenExpiration: 3600}}.toMap()},
	} {
		want := mustValue(normalizeNumbers(tc.fromMaps))
		if ast.Compare(tc.got, want) != 0 {
			t.Errorf("%s: toValue = %v\nconverted toMap = %v", tc.name, tc.got, want)
		}
	}
}

// regoResult gives what OPA's own conversion followed by normalizeNumbers gives.
func TestRegoResultMatchesOPAConversion(t *testing.T) {
	for _, src := range []string{
		`[{"op": "add-env", "containers": ["a", "b"], "env": [{"name": "X", "value": "1"}], "n": 3, "f": 1.5, "big": 1e3, "t": true, "z": null}]`,
		`{"s": {"b", "a", 2}, "o": {1: "one", [1]: "list", "k": {}}, "e": []}`,
		`123456789012345678901234567890`,
	} {
		v := ast.MustParseTerm(src).Value
		got, err := regoToGo(v)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		opa, err := ast.JSON(v)
		if err != nil {
			t.Fatal(err)
		}
		if want := normalizeNumbers(opa); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\nregoToGo %#v\nOPA      %#v", src, got, want)
		}
	}
}
