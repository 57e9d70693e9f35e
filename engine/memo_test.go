package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
)

func TestMemo(t *testing.T) {
	b := bundleOf(t, `policies:
- name: env
  match:
  - name: has-sa
    expression: serviceAccount != null
  rule: data.t.m
`, map[string]string{"t.rego": `package t
m := [{"op": "add-env", "container": "app", "env": [{"name": "ROLE", "value": input.serviceAccount.metadata.annotations.role}]}]
`})
	p := compileT(t, b)
	if p.memo == nil {
		t.Fatal("no memo for a program that does not read the request uid")
	}
	eval := func(req Request) *Result {
		t.Helper()
		res, err := p.Evaluate(context.Background(), req, EvalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := eval(saRequest())
	if first.Trace.Memoized {
		t.Fatal("the first evaluation came from the memo")
	}
	again := eval(saRequest())
	if !again.Trace.Memoized || mustJSON(again.Patch) != mustJSON(first.Patch) {
		t.Fatalf("second evaluation: memoized=%v patch=%s, want %s", again.Trace.Memoized, mustJSON(again.Patch), mustJSON(first.Patch))
	}
	// The memo keeps the compact form: each op's value is a slice of the encoded
	// patch, which the first result and every hit share.
	firstJSON, _ := first.PatchJSON()
	againJSON, _ := again.PatchJSON()
	if &firstJSON[0] != &againJSON[0] {
		t.Fatal("the hit re-encoded the patch")
	}
	for i, op := range again.Patch {
		raw, ok := encodedValue(op.Value)
		if !ok || !bytes.Contains(againJSON, raw) || mustJSON(first.Patch[i].Value) != string(raw) {
			t.Fatalf("memoized op %d value %T %v is not the encoded value of %v", i, op.Value, op.Value, first.Patch[i].Value)
		}
	}
	if got := mustJSON(again.Trace.Policies[0].Ops); got != mustJSON(first.Trace.Policies[0].Ops) {
		t.Fatalf("memoized trace ops %s, want %s", got, mustJSON(first.Trace.Policies[0].Ops))
	}
	pod, err := again.Pod()
	if err != nil {
		t.Fatal(err)
	}
	if env, _ := lookup(pod, "spec", "containers", "0", "env", "1", "value"); env != "r" {
		t.Fatalf("memoized result's pod: env value %v", env)
	}

	// A new ServiceAccount version is a new key, and its new annotation is used.
	changed := saRequest()
	changed.ServiceAccount.ResourceVersion = "2"
	changed.ServiceAccount.Annotations = map[string]string{"role": "r2"}
	if res := eval(changed); res.Trace.Memoized || !strings.Contains(mustJSON(res.Patch), `"r2"`) {
		t.Fatalf("changed ServiceAccount: memoized=%v patch=%s", res.Trace.Memoized, mustJSON(res.Patch))
	}
	// A different request uid is the same key (no policy reads it)...
	uid := saRequest()
	uid.Attributes.UID = "another"
	if !eval(uid).Trace.Memoized {
		t.Fatal("a new request uid missed the memo")
	}
	// ...and so is a change outside the projection (managedFields), while a change
	// inside it (a label) is not.
	outside := saRequest()
	outside.Object = []byte(strings.Replace(podJSON, `"labels":{"app":"x"}`, `"labels":{"app":"x"},"managedFields":[{"manager":"m"}]`, 1))
	if !eval(outside).Trace.Memoized {
		t.Fatal("a change outside the projection missed the memo")
	}
	inside := saRequest()
	inside.Object = []byte(strings.Replace(podJSON, `"labels":{"app":"x"}`, `"labels":{"app":"y"}`, 1))
	if eval(inside).Trace.Memoized {
		t.Fatal("a change inside the projection hit the memo")
	}
	// Explain never uses the memo (it wants the notes).
	res, err := p.Evaluate(context.Background(), saRequest(), EvalOptions{Explain: true})
	if err != nil || res.Trace.Memoized {
		t.Fatalf("explain: memoized=%v err=%v", res.Trace.Memoized, err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestMemoDisabledWhenPoliciesReadTheRequestUID(t *testing.T) {
	for _, tc := range []struct{ name, cond, rego string }{
		{"rego uid", "", `m := [{"op": "set-label", "key": "uid", "value": input.request.uid}]`},
		{"rego whole request", "", `m := [{"op": "set-label", "key": "n", "value": json.marshal(input.request)}]`},
		{"cel uid", "  match:\n  - {name: c, expression: \"request.uid != ''\"}\n", `m := []`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bundleOf(t, "policies:\n- name: p\n"+tc.cond+"  rule: data.t.m\n", map[string]string{"t.rego": "package t\n" + tc.rego + "\n"})
			if p := compileT(t, b); p.memo != nil {
				t.Fatal("memo enabled although a policy reads the request uid")
			}
		})
	}
}

func TestMemoDoesNotKeepFailures(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
m := [{"op": "json-patch", "patch": [{"op": "add", "path": "/spec/nodeName", "value": "n"}]}]
`})
	p := compileT(t, b)
	for i := 0; i < 2; i++ {
		res, err := p.Evaluate(context.Background(), saRequest(), EvalOptions{})
		if err != nil || res.Trace.Memoized || len(res.Failed()) != 1 {
			t.Fatalf("run %d: memoized=%v failed=%d err=%v", i, res.Trace.Memoized, len(res.Failed()), err)
		}
	}
}

// The webhook reuses the buffer that holds the object passed to Evaluate (see
// webhook.Admitter): nothing Evaluate keeps, the memo above all, may refer to its
// bytes. The first pod's bytes are overwritten after its evaluation; a hit for the
// same pod must still give exactly what the first evaluation gave.
func TestEvaluateKeepsNothingOfTheObject(t *testing.T) {
	p := compileDefault(t, Options{Params: benchParams})
	sa := &ServiceAccount{Name: benchdata.ServiceAccount, Namespace: benchdata.Namespace, ResourceVersion: "1",
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": benchdata.RoleARN}}
	pod := benchdata.PodJSON(benchdata.Typical)
	evaluate := func(object []byte) (*Result, string) {
		t.Helper()
		res, err := p.Evaluate(context.Background(), Request{Object: object, Attributes: PodCreate(benchdata.Namespace, ""), ServiceAccount: sa}, EvalOptions{})
		if err != nil || !res.Mutated() {
			t.Fatalf("mutated=%v err=%v", res != nil && res.Mutated(), err)
		}
		patch, err := res.PatchJSON()
		if err != nil {
			t.Fatal(err)
		}
		return res, string(patch) + mustJSON(res.Trace.Policies)
	}
	first := bytes.Clone(pod)
	res, want := evaluate(first)
	if res.Trace.Memoized {
		t.Fatal("the first evaluation came from the memo")
	}
	for i := range first {
		first[i] = 'x'
	}
	again, got := evaluate(bytes.Clone(pod))
	if !again.Trace.Memoized {
		t.Fatal("the second evaluation of the same pod was not a memo hit")
	}
	if got != want {
		t.Fatalf("after the first object was overwritten, the hit gives\n%s\nwant\n%s", got, want)
	}
}
