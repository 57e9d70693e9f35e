package engine

import (
	"context"
	"strings"
	"testing"
)

const saRuleRego = `package t
import rego.v1

# A ServiceAccount rule whose value holds a set.
settings := {"keys": {k | some k, _ in input.serviceAccount.metadata.annotations}, "calls": 1}

m := [{"op": "set-label", "key": "has-role", "value": "yes"}] if "role" in settings.keys
`

func TestServiceAccountRules(t *testing.T) {
	b := bundleOf(t, "serviceAccountRules: [data.t.settings]\npolicies:\n- name: p\n  rule: data.t.m\n",
		map[string]string{"t.rego": saRuleRego})
	p := compileT(t, b)
	if p.derived == nil || len(p.policies[0].derived) != 1 {
		t.Fatal("the ServiceAccount rule is not passed to the policy")
	}
	// The value reaches the policy with its set intact (a JSON round trip would make
	// it an array, and `in` on the keys would still work but set operations would not).
	res := evalT(t, p, saRequest())
	if mustJSON(res.Patch) != `[{"op":"add","path":"/metadata/labels/has-role","value":"yes"}]` {
		t.Fatalf("patch %s, trace %+v", mustJSON(res.Patch), res.Trace.Policies)
	}
	// One cached value per ServiceAccount version.
	if n := p.derived.cache.Len(); n != 1 {
		t.Fatalf("%d cached values, want 1", n)
	}
	other := saRequest()
	other.Object = []byte(strings.Replace(podJSON, `"name":"p"`, `"name":"q"`, 1))
	evalT(t, p, other)
	if n := p.derived.cache.Len(); n != 1 {
		t.Fatalf("another pod of the same ServiceAccount added a cached value: %d", n)
	}
	changed := saRequest()
	changed.ServiceAccount.ResourceVersion = "2"
	changed.ServiceAccount.Annotations = map[string]string{}
	if res := evalT(t, p, changed); res.Mutated() {
		t.Fatalf("the new ServiceAccount version (no role) still got the label: %s", mustJSON(res.Patch))
	}
}

func TestServiceAccountRuleTypesSurvive(t *testing.T) {
	// Set operations on the cached value must work exactly as on the computed one.
	b := bundleOf(t, "serviceAccountRules: [data.t.keys]\npolicies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
keys := {"A", "B"} if input.serviceAccount
m := [{"op": "set-label", "key": "n", "value": format_int(count(keys & {"A", "C"}), 10)}]
`})
	res := evalT(t, compileT(t, b), saRequest())
	if mustJSON(res.Patch) != `[{"op":"add","path":"/metadata/labels/n","value":"1"}]` {
		t.Fatalf("patch %s, failed %v", mustJSON(res.Patch), res.Failed())
	}
}

func TestServiceAccountRuleMustNotReadThePod(t *testing.T) {
	for _, tc := range []struct{ name, rego, want string }{
		{"reads the pod", "package t\ns := input.object.metadata.name\nm := []\n", "reads input.object.metadata.name"},
		{"reads it through a helper", "package t\ns := h\nh := count(input.object.spec.containers)\nm := []\n", "rule h reads input.object.spec.containers"},
		{"reads the request uid", "package t\ns := input.request.uid\nm := []\n", "reads input.request.uid"},
		{"missing", "package t\nm := []\n", "no Rego rule data.t.s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := LoadMap("configmap ns/b", map[string]string{
				ManifestFile: testManifestHead + "serviceAccountRules: [data.t.s]\npolicies:\n- name: p\n  rule: data.t.m\n",
				"t.rego":     tc.rego,
			})
			if err == nil {
				_, err = Compile(context.Background(), []*Bundle{b}, Options{})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "serviceAccountRules[0]") {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestParamsOnlyServiceAccountRule: a rule that reads only input.params (through a
// helper too) has one value for every ServiceAccount; one that also reads the
// ServiceAccount has one per ServiceAccount version.
func TestParamsOnlyServiceAccountRule(t *testing.T) {
	b := bundleOf(t, "serviceAccountRules: [data.t.key, data.t.role]\npolicies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
prefix := object.get(input.params, "prefix", "example.com")
key := concat("/", [prefix, "role"])
role := input.serviceAccount.metadata.annotations.role
m := [{"op": "set-label", "key": "k", "value": replace(key, "/", ".")}]
`})
	p := compileT(t, b)
	rules := p.policies[0].derived
	if len(rules) != 2 || !rules[0].paramsOnly || rules[1].paramsOnly {
		t.Fatalf("paramsOnly = %v, %v; want true, false", rules[0].paramsOnly, rules[1].paramsOnly)
	}
	for i, rv := range []string{"1", "2", "3"} {
		req := saRequest()
		req.ServiceAccount.ResourceVersion = rv
		res := evalT(t, p, req)
		if mustJSON(res.Patch) != `[{"op":"add","path":"/metadata/labels/k","value":"example.com.role"}]` {
			t.Fatalf("patch %s, failed %v", mustJSON(res.Patch), res.Failed())
		}
		// One value of key in all, plus one value of role per version.
		if n, want := p.derived.cache.Len(), 1+(i+1); n != want {
			t.Fatalf("after %d ServiceAccount versions: %d cached values, want %d", i+1, n, want)
		}
	}
}

func TestConditionPerServiceAccount(t *testing.T) {
	c, err := newCELCompiler(DefaultCELCostLimit)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{"serviceAccount != null", true},
		{"identities.containerCredentials == null && params.x == 'y'", true},
		{"namespaceObject.metadata.name == 'ns'", true},
		{"request.namespace == 'ns'", true},
		{"request['namespace'] == 'ns'", true},
		{"request.operation == 'CREATE'", false},
		{"has(request.userInfo)", false},
		{"[request].size() == 1", false},
		{"object.metadata.name == 'p'", false},
		{"oldObject == null", false},
		{"serviceAccount.metadata.annotations.exists(k, k == object.metadata.name)", false},
	} {
		cc, err := c.compile(MatchCondition{Name: "c", Expression: tc.expr})
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if cc.perServiceAccount != tc.want {
			t.Errorf("%s: perServiceAccount = %t, want %t", tc.expr, cc.perServiceAccount, tc.want)
		}
	}
}

// TestConditionCache: a condition that reads only the ServiceAccount is evaluated once
// per ServiceAccount version, whatever the pod; a new version is evaluated afresh.
func TestConditionCache(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  match:\n  - {name: has-role, expression: \"has(serviceAccount.metadata.annotations.role)\"}\n  - {name: pod-p, expression: \"object.metadata.name == 'p'\"}\n  rule: data.t.m\n",
		map[string]string{"t.rego": "package t\nm := [{\"op\": \"set-label\", \"key\": \"role\", \"value\": \"yes\"}]\n"})
	p := compileT(t, b)
	if p.conditions == nil || !p.policies[0].conditions[0].perServiceAccount || p.policies[0].conditions[1].perServiceAccount {
		t.Fatal("want the first condition cached per ServiceAccount, the second not")
	}
	for _, name := range []string{"p", "q", "p"} {
		req := saRequest()
		req.Object = []byte(strings.Replace(podJSON, `"name":"p"`, `"name":"`+name+`"`, 1))
		if res := evalT(t, p, req); res.Mutated() != (name == "p") {
			t.Fatalf("pod %s: mutated = %t, trace %+v", name, res.Mutated(), res.Trace.Policies)
		}
	}
	if n := p.conditions.cache.Len(); n != 1 {
		t.Fatalf("%d cached condition results after three pods of one ServiceAccount version, want 1", n)
	}
	changed := saRequest()
	changed.ServiceAccount.ResourceVersion = "2"
	changed.ServiceAccount.Annotations = map[string]string{}
	if res := evalT(t, p, changed); res.Mutated() {
		t.Fatalf("the new ServiceAccount version (no role) still matched: %s", mustJSON(res.Patch))
	}
	if n := p.conditions.cache.Len(); n != 2 {
		t.Fatalf("%d cached condition results after a second ServiceAccount version, want 2", n)
	}
}
