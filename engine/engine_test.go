package engine

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

const testManifestHead = `apiVersion: pod-identity-webhook.io/v1alpha1
kind: Bundle
name: t
`

// bundleOf builds a bundle from a manifest policy list (YAML) and Rego modules.
func bundleOf(t *testing.T, policiesYAML string, modules map[string]string) *Bundle {
	t.Helper()
	data := map[string]string{ManifestFile: testManifestHead + policiesYAML}
	for k, v := range modules {
		data[k] = v
	}
	b, err := LoadMap("test bundle", data)
	if err != nil {
		t.Fatalf("LoadMap: %v", err)
	}
	return b
}

func compileT(t *testing.T, bundles ...*Bundle) *Program {
	t.Helper()
	p, err := Compile(context.Background(), bundles, Options{Params: map[string]any{"region": "us-west-2"}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

const podJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns","labels":{"app":"x"}},
 "spec":{"serviceAccountName":"sa","futureField":{"keep":true},
  "initContainers":[{"name":"init","image":"i"}],
  "containers":[{"name":"app","image":"a","env":[{"name":"A","value":"1"}],"someNewField":7},{"name":"side","image":"s"}],
  "volumes":[{"name":"data","emptyDir":{}}]}}`

const injectRego = `package t
mutations := [m |
	some c in array.concat(object.get(input.object.spec, "initContainers", []), input.object.spec.containers)
	m := {"op": "add-env", "container": c.name, "env": [{"name": "REGION", "value": input.params.region}]}
] if input.serviceAccount != null
volume := [{"op": "add-volume", "position": "first", "volume": {"name": "tok", "projected": {"sources": []}}}]
label := [{"op": "set-label", "key": "injected", "value": "yes"}]
notes contains "a note"
`

func evalT(t *testing.T, p *Program, req Request) *Result {
	t.Helper()
	res, err := p.Evaluate(context.Background(), req, EvalOptions{Explain: true})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	return res
}

func saRequest() Request {
	return Request{
		Object:         []byte(podJSON),
		Attributes:     PodCreate("ns", "p"),
		ServiceAccount: &ServiceAccount{Name: "sa", Namespace: "ns", Annotations: map[string]string{"role": "r"}},
	}
}

// checkPatchEquivalence applies the result's patch to the original pod with an
// independent JSON Patch implementation and compares with the engine's own pod.
func checkPatchEquivalence(t *testing.T, original []byte, res *Result) {
	t.Helper()
	patch, err := json.Marshal(res.Patch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Patch) == 0 {
		patch = []byte("[]")
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode patch %s: %v", patch, err)
	}
	out, err := p.Apply(original)
	if err != nil {
		t.Fatalf("apply patch %s: %v", patch, err)
	}
	var got, want any
	_ = json.Unmarshal(out, &got)
	pod, err := res.Pod()
	if err != nil {
		t.Fatal(err)
	}
	own, _ := json.Marshal(pod)
	_ = json.Unmarshal(own, &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("patch applied by evanphx/json-patch:\n%s\ndiffers from the engine's pod:\n%s", out, own)
	}
}

func TestEvaluateMatchAndPatch(t *testing.T) {
	b := bundleOf(t, `policies:
- name: env
  match:
  - name: has-sa
    expression: serviceAccount != null
  - name: role-annotated
    expression: "'role' in serviceAccount.metadata.annotations"
  rule: data.t.mutations
  notes: data.t.notes
- name: volume
  rule: data.t.volume
- name: label
  rule: data.t.label
`, map[string]string{"t.rego": injectRego})
	p := compileT(t, b)

	res := evalT(t, p, saRequest())
	if res.Denied != "" || len(res.Failed()) > 0 {
		t.Fatalf("unexpected failure: %+v", res.Trace)
	}
	wantOps := []Op{
		{Op: "add", Path: "/spec/initContainers/0/env", Value: []any{map[string]any{"name": "REGION", "value": "us-west-2"}}},
		{Op: "add", Path: "/spec/containers/0/env/-", Value: map[string]any{"name": "REGION", "value": "us-west-2"}},
		{Op: "add", Path: "/spec/containers/1/env", Value: []any{map[string]any{"name": "REGION", "value": "us-west-2"}}},
		{Op: "add", Path: "/spec/volumes/0", Value: map[string]any{"name": "tok", "projected": map[string]any{"sources": []any{}}}},
		{Op: "add", Path: "/metadata/labels/injected", Value: "yes"},
	}
	if !reflect.DeepEqual(res.Patch, wantOps) {
		got, _ := json.Marshal(res.Patch)
		t.Fatalf("patch:\n%s", got)
	}
	checkPatchEquivalence(t, []byte(podJSON), res)
	// Fields the webhook does not know survive.
	pod, err := res.Pod()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := lookup(pod, "spec", "containers", "0", "someNewField"); v != int64(7) {
		t.Errorf("unknown container field lost: %v", v)
	}
	if v, _ := lookup(pod, "spec", "futureField", "keep"); v != true {
		t.Errorf("unknown spec field lost: %v", v)
	}
	tr := res.Trace.Policies[0]
	if !tr.Matched || len(tr.Conditions) != 2 || len(tr.Changes) != 3 || !reflect.DeepEqual(tr.Notes, []string{"a note"}) {
		t.Errorf("trace of the env policy: %+v", tr)
	}
}

func TestEvaluateUnmatchedNamesCondition(t *testing.T) {
	b := bundleOf(t, `policies:
- name: env
  match:
  - name: has-sa
    expression: serviceAccount != null
  - name: role-annotated
    expression: "'role' in serviceAccount.metadata.annotations"
  rule: data.t.mutations
`, map[string]string{"t.rego": injectRego})
	p := compileT(t, b)
	req := saRequest()
	req.ServiceAccount.Annotations = nil
	res := evalT(t, p, req)
	if res.Mutated() {
		t.Fatalf("mutated without a role: %v", res.Patch)
	}
	d := res.Trace.Policies[0].Deciding()
	if d == nil || d.Name != "role-annotated" || d.Result {
		t.Fatalf("deciding condition: %+v", d)
	}
	var out strings.Builder
	if err := res.WriteExplain(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SKIPPED  t/env", `condition "role-annotated" was false`, "'role' in serviceAccount.metadata.annotations", "result: not mutated"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, out.String())
		}
	}
}

func TestEachPolicySeesEarlierChanges(t *testing.T) {
	b := bundleOf(t, `policies:
- name: first
  rule: data.t.first
- name: second
  match:
  - name: first-ran
    expression: object.spec.containers[0].env.exists(e, e.name == 'FIRST')
  rule: data.t.second
`, map[string]string{"t.rego": `package t
first := [{"op": "add-env", "container": "app", "env": [{"name": "FIRST", "value": "1"}]}]
second := [{"op": "add-env", "container": "app", "env": [{"name": "SECOND", "value": v}]}] if {
	some e in input.object.spec.containers[0].env
	e.name == "FIRST"
	v := concat("", [e.value, "+"])
}
`})
	res := evalT(t, compileT(t, b), saRequest())
	obj, err := res.Object()
	if err != nil {
		t.Fatal(err)
	}
	env, _ := lookup(obj, "spec", "containers", "0", "env")
	want := []any{
		map[string]any{"name": "A", "value": "1"},
		map[string]any{"name": "FIRST", "value": "1"},
		map[string]any{"name": "SECOND", "value": "1+"},
	}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("env = %v", env)
	}
	// The request's patch shares the first policy's ops (appendShared); the second's
	// are appended to it without changing the first policy's trace.
	first := `[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"FIRST","value":"1"}}]`
	second := `[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"SECOND","value":"1+"}}]`
	if got := mustJSON(res.Trace.Policies[0].Ops); got != first {
		t.Errorf("first policy's ops = %s, want %s", got, first)
	}
	if got := mustJSON(res.Trace.Policies[1].Ops); got != second {
		t.Errorf("second policy's ops = %s, want %s", got, second)
	}
	if got, want := mustJSON(res.Patch), first[:len(first)-1]+","+second[1:]; got != want {
		t.Errorf("patch = %s, want %s", got, want)
	}
}

// TestAppendedItemsAreNotAliased: items appended to a raw env list are shared with
// the add op until the list is decoded (rawList); a later change inside one must
// change the pod's copy, not the value the patch gives for the add.
func TestAppendedItemsAreNotAliased(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
m := [{"op": "add-env", "containers": ["app"], "env": [{"name": "X", "value": "1"}]},
      {"op": "json-patch", "patch": [{"op": "replace", "path": "/spec/containers/0/env/1/value", "value": "2"}]}]
`})
	res, err := compileT(t, b).Evaluate(context.Background(), saRequest(), EvalOptions{}) // not Explain: lists stay raw
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"X","value":"1"}},{"op":"replace","path":"/spec/containers/0/env/1/value","value":"2"}]`
	if got := mustJSON(res.Patch); got != want {
		t.Fatalf("patch = %s\nwant    %s", got, want)
	}
}

func TestMutationVocabulary(t *testing.T) {
	cases := []struct {
		name    string
		rule    string
		grants  string
		wantOps string // JSON of the expected patch; empty when an error is expected
		wantErr string
	}{
		{name: "set-env replaces in place and appends",
			rule:    `[{"op": "set-env", "container": "app", "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]}]`,
			wantOps: `[{"op":"replace","path":"/spec/containers/0/env/0","value":{"name":"A","value":"2"}},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"B","value":"3"}}]`},
		{name: "set-env of an equal entry is a no-op",
			rule:    `[{"op": "set-env", "container": "app", "env": [{"name": "A", "value": "1"}]}]`,
			wantOps: `null`},
		{name: "add-volume-mount creates the list",
			rule:    `[{"op": "add-volume-mount", "container": "side", "volumeMount": {"name": "data", "mountPath": "/d"}}]`,
			wantOps: `[{"op":"add","path":"/spec/containers/1/volumeMounts","value":[{"mountPath":"/d","name":"data"}]}]`},
		{name: "add-env-from",
			rule:    `[{"op": "add-env-from", "container": "init", "envFrom": [{"configMapRef": {"name": "c"}}]}]`,
			wantOps: `[{"op":"add","path":"/spec/initContainers/0/envFrom","value":[{"configMapRef":{"name":"c"}}]}]`},
		{name: "add-volume last",
			rule:    `[{"op": "add-volume", "volume": {"name": "s", "secret": {"secretName": "x"}}}]`,
			wantOps: `[{"op":"add","path":"/spec/volumes/-","value":{"name":"s","secret":{"secretName":"x"}}}]`},
		{name: "set-annotation escapes the key",
			rule:    `[{"op": "set-annotation", "key": "a.io/b~c", "value": "v"}]`,
			wantOps: `[{"op":"add","path":"/metadata/annotations","value":{"a.io/b~c":"v"}}]`},
		{name: "set-label of an equal value is a no-op",
			rule:    `[{"op": "set-label", "key": "app", "value": "x"}]`,
			wantOps: `null`},
		{name: "fsGroup allowed",
			rule:    `[{"op": "set-pod-security-context", "securityContext": {"fsGroup": 65534}}]`,
			wantOps: `[{"op":"add","path":"/spec/securityContext","value":{"fsGroup":65534}}]`},
		{name: "json-patch inside the guardrails",
			rule:    `[{"op": "json-patch", "patch": [{"op": "add", "path": "/spec/containers/1/env", "value": []}]}]`,
			wantOps: `[{"op":"add","path":"/spec/containers/1/env","value":[]}]`},
		{name: "image is refused",
			rule:    `[{"op": "json-patch", "patch": [{"op": "replace", "path": "/spec/containers/0/image", "value": "evil"}]}]`,
			wantErr: `/spec/containers/0/image is not allowed: container field "image"`},
		{name: "command is refused",
			rule:    `[{"op": "json-patch", "patch": [{"op": "add", "path": "/spec/containers/0/command", "value": ["sh"]}]}]`,
			wantErr: `container field "command"`},
		{name: "privileged is refused",
			rule:    `[{"op": "json-patch", "patch": [{"op": "add", "path": "/spec/containers/0/securityContext", "value": {"privileged": true}}]}]`,
			wantErr: `container field "securityContext"`},
		{name: "runAsUser on the pod is refused",
			rule:    `[{"op": "set-pod-security-context", "securityContext": {"runAsUser": 0}}]`,
			wantErr: `securityContext field "runAsUser"`},
		{name: "hostPath volume is refused",
			rule:    `[{"op": "add-volume", "volume": {"name": "h", "hostPath": {"path": "/"}}}]`,
			wantErr: `volume type "hostPath"`},
		{name: "hostPath volume allowed by a grant",
			rule:    `[{"op": "add-volume", "volume": {"name": "h", "hostPath": {"path": "/"}}}]`,
			grants:  "grants:\n  volumeTypes: [hostPath]\n",
			wantOps: `[{"op":"add","path":"/spec/volumes/-","value":{"hostPath":{"path":"/"},"name":"h"}}]`},
		{name: "image allowed by a path grant",
			rule:    `[{"op": "json-patch", "patch": [{"op": "replace", "path": "/spec/containers/0/image", "value": "b"}]}]`,
			grants:  "grants:\n  paths: [/spec/containers/*/image]\n",
			wantOps: `[{"op":"replace","path":"/spec/containers/0/image","value":"b"}]`},
		{name: "initContainer selects the init container of a shared name",
			rule:    `[{"op": "add-env", "container": "app", "initContainer": true, "env": [{"name": "X", "value": "1"}]}]`,
			wantErr: `no container or init container named "app"`},
		{name: "initContainer must be a boolean",
			rule:    `[{"op": "add-env", "container": "init", "initContainer": "yes", "env": []}]`,
			wantErr: `"initContainer" must be a boolean`},
		{name: "initContainer true",
			rule:    `[{"op": "add-env", "container": "init", "initContainer": true, "env": [{"name": "X", "value": "1"}]}]`,
			wantOps: `[{"op":"add","path":"/spec/initContainers/0/env","value":[{"name":"X","value":"1"}]}]`},
		{name: "add-env to several containers",
			rule:    `[{"op": "add-env", "containers": ["app", "side"], "env": [{"name": "X", "value": "1"}]}]`,
			wantOps: `[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"X","value":"1"}},{"op":"add","path":"/spec/containers/1/env","value":[{"name":"X","value":"1"}]}]`},
		{name: "add-volume-mount to several containers",
			rule:    `[{"op": "add-volume-mount", "containers": ["side", "app"], "volumeMount": {"name": "data", "mountPath": "/d"}}]`,
			wantOps: `[{"op":"add","path":"/spec/containers/1/volumeMounts","value":[{"mountPath":"/d","name":"data"}]},{"op":"add","path":"/spec/containers/0/volumeMounts","value":[{"mountPath":"/d","name":"data"}]}]`},
		{name: "set-env in several containers",
			rule:    `[{"op": "set-env", "containers": ["app", "side"], "env": [{"name": "A", "value": "1"}]}]`,
			wantOps: `[{"op":"add","path":"/spec/containers/1/env","value":[{"name":"A","value":"1"}]}]`},
		{name: "add-env-from to init containers",
			rule:    `[{"op": "add-env-from", "containers": ["init"], "initContainer": true, "envFrom": [{"configMapRef": {"name": "c"}}]}]`,
			wantOps: `[{"op":"add","path":"/spec/initContainers/0/envFrom","value":[{"configMapRef":{"name":"c"}}]}]`},
		{name: "no containers is no change",
			rule:    `[{"op": "add-env", "containers": [], "env": [{"name": "X", "value": "1"}]}]`,
			wantOps: `null`},
		{name: "container and containers",
			rule:    `[{"op": "add-env", "container": "app", "containers": ["side"], "env": []}]`,
			wantErr: `add-env: needs exactly one of "container" (a name) and "containers" (an array of names)`},
		{name: "neither container nor containers",
			rule:    `[{"op": "add-volume-mount", "volumeMount": {"name": "data", "mountPath": "/d"}}]`,
			wantErr: `add-volume-mount: needs exactly one of "container"`},
		{name: "containers not an array",
			rule:    `[{"op": "add-env", "containers": "app", "env": []}]`,
			wantErr: `"containers" must be an array of container names, got a string`},
		{name: "containers with a non-name",
			rule:    `[{"op": "add-env", "containers": ["app", 1], "env": []}]`,
			wantErr: `"containers"[1] must be a container name, got 1`},
		{name: "containers with an unknown name changes none",
			rule:    `[{"op": "add-env", "containers": ["app", "nope"], "env": [{"name": "X", "value": "1"}]}]`,
			wantErr: `"containers"[1]: no container or init container named "nope"`},
		{name: "unknown container",
			rule:    `[{"op": "add-env", "container": "nope", "env": []}]`,
			wantErr: `no container or init container named "nope"`},
		{name: "unknown op",
			rule:    `[{"op": "add-envs", "container": "app"}]`,
			wantErr: `unknown op "add-envs"`},
		{name: "unknown field",
			rule:    `[{"op": "add-env", "container": "app", "env": [], "extra": 1}]`,
			wantErr: `add-env: unknown field "extra"`},
		{name: "missing field",
			rule:    `[{"op": "add-env", "container": "app"}]`,
			wantErr: `add-env: missing field "env"`},
		{name: "duplicate volume",
			rule:    `[{"op": "add-volume", "volume": {"name": "data", "emptyDir": {}}}]`,
			wantErr: `already has a volume named "data"`},
		{name: "not a list",
			rule:    `{"op": "add-env"}`,
			wantErr: `must return an array or a set of mutations, got an object`},
		{name: "env entry without a name",
			rule:    `[{"op": "add-env", "container": "app", "env": [{"value": "x"}]}]`,
			wantErr: `"env[0]" needs a non-empty "name"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bundleOf(t, tc.grants+"policies:\n- name: p\n  rule: data.t.m\n",
				map[string]string{"t.rego": "package t\nm := " + tc.rule + "\n"})
			res := evalT(t, compileT(t, b), saRequest())
			pt := res.Trace.Policies[0]
			if tc.wantErr != "" {
				if !strings.Contains(pt.Error, tc.wantErr) {
					t.Fatalf("error = %q, want it to contain %q", pt.Error, tc.wantErr)
				}
				if res.Mutated() {
					t.Fatalf("a failed policy (onError: skip) left changes: %v", res.Patch)
				}
				return
			}
			if pt.Error != "" {
				t.Fatalf("unexpected error: %s", pt.Error)
			}
			got, _ := json.Marshal(res.Patch)
			if string(got) != tc.wantOps {
				t.Fatalf("patch = %s\nwant    %s", got, tc.wantOps)
			}
			checkPatchEquivalence(t, []byte(podJSON), res)
		})
	}
}

func TestOnError(t *testing.T) {
	rego := map[string]string{"t.rego": `package t
bad := [{"op": "json-patch", "patch": [{"op": "add", "path": "/spec/nodeName", "value": "n"}]}]
good := [{"op": "set-label", "key": "ok", "value": "1"}]
`}
	skip := bundleOf(t, "policies:\n- name: bad\n  rule: data.t.bad\n- name: good\n  rule: data.t.good\n", rego)
	res := evalT(t, compileT(t, skip), saRequest())
	if res.Denied != "" || len(res.Failed()) != 1 || len(res.Patch) != 1 {
		t.Fatalf("skip: denied=%q failed=%d patch=%v", res.Denied, len(res.Failed()), res.Patch)
	}
	deny := bundleOf(t, "policies:\n- name: bad\n  rule: data.t.bad\n  onError: deny\n- name: good\n  rule: data.t.good\n", rego)
	res = evalT(t, compileT(t, deny), saRequest())
	if !strings.Contains(res.Denied, "policy t/bad failed") || len(res.Trace.Policies) != 1 {
		t.Fatalf("deny: denied=%q policies=%d", res.Denied, len(res.Trace.Policies))
	}
}

func TestDeadlineStopsALoopingRule(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: slow\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
m := [{"op": "set-label", "key": "n", "value": format_int(count(xs), 10)}]
xs contains [a, b, c] if {
	some a in numbers.range(1, 300)
	some b in numbers.range(1, 300)
	some c in numbers.range(1, 300)
}
`})
	p, err := Compile(context.Background(), []*Bundle{b}, Options{EvalTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := evalT(t, p, saRequest())
	if !strings.Contains(res.Trace.Policies[0].Error, "per-request deadline") {
		t.Fatalf("error = %q", res.Trace.Policies[0].Error)
	}
	if res.Mutated() {
		t.Fatal("a policy cut by the deadline left changes")
	}
	// Not a timing assertion on the engine's speed: only that the cut happened long
	// before the loop (27 million iterations) could finish.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("evaluation took %s", d)
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name     string
		policies string
		rego     string
		want     []string
	}{
		{"http.send refused", "policies:\n- name: p\n  rule: data.t.m\n",
			"package t\nm := [x] if { x := http.send({\"method\": \"get\", \"url\": \"http://x\"}) }\n",
			[]string{"t.rego:2", "built-in http.send is not allowed", "policy p"}},
		{"net.lookup_ip_addr refused", "policies:\n- name: p\n  rule: data.t.m\n",
			"package t\n\nm := [x] if { x := net.lookup_ip_addr(\"example.com\") }\n",
			[]string{"t.rego:3", "net.lookup_ip_addr"}},
		{"time.now_ns refused", "policies:\n- name: p\n  rule: data.t.m\n",
			"package t\nm := [time.now_ns()]\n", []string{"time.now_ns", "clock"}},
		{"rand.intn refused", "policies:\n- name: p\n  rule: data.t.m\n",
			"package t\nm := [rand.intn(\"x\", 10)]\n", []string{"rand.intn", "random"}},
		{"opa.runtime refused", "policies:\n- name: p\n  rule: data.t.m\n",
			"package t\nm := [opa.runtime()]\n", []string{"opa.runtime"}},
		{"missing rule", "policies:\n- name: p\n  rule: data.t.nope\n",
			"package t\nm := []\n", []string{"policies[0].rule", "no Rego rule data.t.nope"}},
		{"bad CEL", "policies:\n- name: p\n  match:\n  - name: c\n    expression: object.spec.(\n  rule: data.t.m\n",
			"package t\nm := []\n", []string{"policies[0].match[0].expression", "condition c", "invalid CEL"}},
		{"CEL not bool", "policies:\n- name: p\n  match:\n  - name: c\n    expression: \"'x'\"\n  rule: data.t.m\n",
			"package t\nm := []\n", []string{"must evaluate to a bool"}},
		{"CEL over the cost limit", "policies:\n- name: p\n  match:\n  - name: c\n    expression: object.spec.containers.all(a, object.spec.containers.all(b, object.spec.containers.all(c, a.name != b.name || b.name != c.name)))\n  rule: data.t.m\n",
			"package t\nm := []\n", []string{"worst-case cost", "exceeds the limit"}},
		{"Rego type error", "policies:\n- name: p\n  rule: data.t.m\n",
			"package t\nm := [x] if { x := 1 + \"a\" }\n", []string{"t.rego:2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := map[string]string{ManifestFile: testManifestHead + tc.policies, "t.rego": tc.rego}
			b, err := LoadMap("configmap ns/site", data)
			if err == nil {
				_, err = Compile(context.Background(), []*Bundle{b}, Options{})
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "configmap ns/site") {
				t.Errorf("error does not name the bundle: %q", err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name string
		data map[string]string
		want string
	}{
		{"no manifest", map[string]string{"a.rego": "package a"}, "manifest.yaml: missing"},
		{"unknown key", map[string]string{ManifestFile: testManifestHead, "manifest.yml": ""}, `manifest.yml: unexpected key`},
		{"bad yaml", map[string]string{ManifestFile: "a: [b"}, "manifest.yaml: invalid YAML"},
		{"unknown manifest field", map[string]string{ManifestFile: testManifestHead + "polices: []\n"}, `unknown field "polices"`},
		{"wrong apiVersion", map[string]string{ManifestFile: "apiVersion: v1\nkind: Bundle\nname: x\n"}, "apiVersion: must be"},
		{"bad name", map[string]string{ManifestFile: "apiVersion: pod-identity-webhook.io/v1alpha1\nkind: Bundle\nname: Bad_Name\n"}, "name: must be a DNS label"},
		{"duplicate policy", map[string]string{ManifestFile: testManifestHead + "policies:\n- {name: a, rule: data.x.y}\n- {name: a, rule: data.x.y}\n", "x.rego": "package x\ny := []"}, `policies[1].name: "a" is already`},
		{"rule not a ref", map[string]string{ManifestFile: testManifestHead + "policies:\n- {name: a, rule: 'x.y'}\n"}, "policies[0].rule: must be a reference under data"},
		{"bad onError", map[string]string{ManifestFile: testManifestHead + "policies:\n- {name: a, rule: data.x.y, onError: ignore}\n"}, "policies[0].onError"},
		{"rego syntax", map[string]string{ManifestFile: testManifestHead, "x.rego": "package x\n\ny := [\n"}, "x.rego:"},
		{"bad grant", map[string]string{ManifestFile: testManifestHead + "grants:\n  paths: [spec/x]\n"}, "grants.paths[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadMap("configmap ns/b", tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	p := compileT(t, bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": "package t\nm := []"}))
	for _, obj := range []string{"", "[]", `"pod"`, `{"a":`, `{} {}`} {
		_, err := p.Evaluate(context.Background(), Request{Object: []byte(obj)}, EvalOptions{})
		var ie *InputError
		if err == nil || !asInputError(err, &ie) || ie.Field != "object" {
			t.Errorf("object %q: error = %v", obj, err)
		}
	}
}

func asInputError(err error, target **InputError) bool {
	ie, ok := err.(*InputError)
	*target = ie
	return ok
}

func TestRunTests(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{
		"t.rego":      "package t\nm := [1]\n",
		"t_test.rego": "package t_test\ntest_ok if data.t.m == [1]\ntest_bad if data.t.m == [2]\n",
	})
	r, err := RunTests(context.Background(), []*Bundle{b})
	if err != nil {
		t.Fatal(err)
	}
	if r.Passed != 1 || len(r.Failed) != 1 || !strings.Contains(r.Failed[0], "t_test.test_bad") {
		t.Fatalf("report: %s", r)
	}
}

// TestMutationDescriptions checks the trace lines of mutations naming several containers.
func TestMutationDescriptions(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
m := [
	{"op": "add-env", "containers": ["app", "side"], "env": [{"name": "X", "value": "1"}]},
	{"op": "add-volume-mount", "containers": [], "volumeMount": {"name": "data", "mountPath": "/d"}},
	{"op": "set-env", "containers": ["app", "side"], "env": [{"name": "A", "value": "1"}]},
]
`})
	res := evalT(t, compileT(t, b), saRequest())
	want := []string{
		`containers "app", "side": add env X=1`,
		`no containers: add volumeMount data at /d`,
		`container "app": env already set; container "side": set env A=1`,
	}
	if got := res.Trace.Policies[0].Changes; !reflect.DeepEqual(got, want) {
		t.Fatalf("changes = %q, want %q", got, want)
	}
}
