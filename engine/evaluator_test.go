package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
)

// The default bundle must stay on the fast path: a change to it that the IR machine
// cannot run would silently cost 2-5x per admission.
func TestDefaultBundleRunsOnTheIRMachine(t *testing.T) {
	for _, ev := range []Evaluator{"", EvaluatorIR, EvaluatorTopdown} {
		p := compileDefault(t, Options{Params: benchParams, Evaluator: ev})
		for _, cp := range p.policies {
			if planned := cp.rule.plan != nil; planned != (ev != EvaluatorTopdown) {
				t.Errorf("evaluator %q, policy %s: planned %v (%s)", ev, cp.Policy.Name, planned, cp.rule.topdownReason)
			}
			if len(cp.derived) == 0 {
				t.Errorf("policy %s takes no ServiceAccount rule values", cp.Policy.Name)
			}
			// Each derived rule is one the plan evaluates, so its value is taken, not
			// computed again.
			if cp.rule.plan != nil && (len(cp.rule.derivedRules) != len(cp.derived) || slices.Contains(cp.rule.derivedRules, -1)) {
				t.Errorf("policy %s: derived rules %v in the plan, for %d rules", cp.Policy.Name, cp.rule.derivedRules, len(cp.derived))
			}
		}
	}
}

func TestUnknownEvaluatorIsRefused(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.mutations\n", map[string]string{"t.rego": injectRego})
	_, err := Compile(context.Background(), []*Bundle{b}, Options{Evaluator: "wasm"})
	if err == nil || !strings.Contains(err.Error(), `"wasm"`) {
		t.Fatalf("error %v, want the unknown evaluator named", err)
	}
}

// A rule the machine cannot run is evaluated by topdown, and explain says so and why.
func TestUnplannableRuleFallsBackToTopdown(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.mutations\n", map[string]string{"t.rego": `package t
mutations := [{"op": "set-label", "key": "picked", "value": data.labels[input.object.metadata.name]}]
`, "labels.rego": `package labels
app := "one"
other := "two"
`})
	p := compileT(t, b)
	if p.policies[0].rule.plan != nil {
		t.Fatal("a rule reading data by a variable key was planned; pick another unplannable construct")
	}
	pod := strings.Replace(podJSON, `"name":"p"`, `"name":"app"`, 1)
	res := evalT(t, p, Request{Object: []byte(pod), Attributes: PodCreate("ns", "")})
	if len(res.Patch) != 1 || res.Patch[0].Value != "one" {
		t.Fatalf("patch %+v, want the label set to one", res.Patch)
	}
	notes := strings.Join(res.Trace.Policies[0].Notes, "\n")
	if !strings.Contains(notes, "evaluated by topdown") || !strings.Contains(notes, "CallDynamic") {
		t.Errorf("explain does not say the rule ran on topdown, and why:\n%s", notes)
	}
}

// evaluatorSeeds are pods that take the default bundle's branches: sizes, Windows,
// env and mounts already present, skipped containers, init containers.
func evaluatorSeeds() [][]byte {
	var out [][]byte
	for _, size := range benchdata.Sizes {
		b, _ := json.Marshal(benchdata.Pod(size))
		out = append(out, b)
	}
	out = append(out, []byte(podJSON),
		[]byte(`{"metadata":{"name":"w","annotations":{"eks.amazonaws.com/skip-containers":"side,init","eks.amazonaws.com/token-expiration":"3600"}},
 "spec":{"nodeSelector":{"kubernetes.io/os":"windows"},"initContainers":[{"name":"init"}],
  "containers":[{"name":"app","env":[{"name":"AWS_ROLE_ARN","value":"x"},{"name":"AWS_REGION","value":"eu-west-1"}],
   "volumeMounts":[{"name":"aws-iam-token","mountPath":"/m"}]},{"name":"side"}],
  "volumes":[{"name":"aws-iam-token","emptyDir":{}}]}}`),
		[]byte(`{"metadata":{"name":"n","annotations":{"eks.amazonaws.com/token-expiration":"bad"}},"spec":{"containers":[]}}`),
		[]byte(`{"metadata":{"name":"x","labels":{"beta.kubernetes.io/os":"windows"}},"spec":{"containers":[{"name":"c","env":[{"name":"AWS_WEB_IDENTITY_TOKEN_FILE","valueFrom":{}}]}],"restartPolicy":"Never"}}`),
		// For the example bundles: include-containers, fsgroup, session-name.
		[]byte(`{"metadata":{"generateName":"web-","annotations":{"eks.amazonaws.com/include-containers":"app, side"}},
 "spec":{"securityContext":{"runAsUser":1000},"initContainers":[{"name":"init","securityContext":{"runAsNonRoot":true}}],
  "containers":[{"name":"app","securityContext":{"runAsUser":1001}},{"name":"side"},{"name":"mesh","env":[{"name":"AWS_ROLE_SESSION_NAME","value":"s"}]}]}}`))
	return out
}

// withExamples compiles the default bundle and, after it, every example site bundle:
// site rules are where unusual Rego appears.
func withExamples(tb testing.TB, ev Evaluator) *Program {
	tb.Helper()
	def, err := LoadFS(policies.FS, "embedded default bundle")
	if err != nil {
		tb.Fatal(err)
	}
	bundles := []*Bundle{def}
	dirs, _ := filepath.Glob(filepath.Join("..", "examples", "*"))
	for _, dir := range dirs {
		b, err := LoadDir(dir)
		if err != nil {
			tb.Fatal(err)
		}
		bundles = append(bundles, b)
	}
	if len(bundles) < 5 {
		tb.Fatalf("found %d bundles, want the default and at least 4 examples", len(bundles))
	}
	p, err := Compile(context.Background(), bundles, Options{Params: benchParams, MemoSize: -1, Evaluator: ev})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// evaluatorRequest is FuzzEvaluatorsAgree's request for its arguments.
func evaluatorRequest(pod []byte, role, regional, expiration, skip, namespaceRegion string, credentials bool) Request {
	annotations := map[string]string{}
	for k, v := range map[string]string{"role-arn": role, "sts-regional-endpoints": regional, "token-expiration": expiration, "skip-containers": skip} {
		if v != "" {
			annotations["eks.amazonaws.com/"+k] = v
		}
	}
	r := Request{Object: pod, Attributes: PodCreate("ns", ""),
		ServiceAccount: &ServiceAccount{Name: "sa", Namespace: "ns", ResourceVersion: "1", Annotations: annotations}}
	if namespaceRegion != "" {
		r.Namespace = &NamespaceObject{Name: "ns", Annotations: map[string]string{"eks.amazonaws.com/region": namespaceRegion}}
	}
	if credentials {
		r.Identities.ContainerCredentials = &ContainerCredentialsIdentity{Namespace: "ns", ServiceAccount: "sa"}
	}
	return r
}

// evaluatorArgs are FuzzEvaluatorsAgree's arguments.
type evaluatorArgs struct {
	pod                                               []byte
	role, regional, expiration, skip, namespaceRegion string
	credentials                                       bool
}

func (a evaluatorArgs) request() Request {
	return evaluatorRequest(a.pod, a.role, a.regional, a.expiration, a.skip, a.namespaceRegion, a.credentials)
}

// evaluatorSeedArgs are FuzzEvaluatorsAgree's seeds.
func evaluatorSeedArgs() []evaluatorArgs {
	var out []evaluatorArgs
	for i, pod := range evaluatorSeeds() {
		annotations := []string{"arn:aws:iam::111122223333:role/r", "true", "86400", ""}
		if i%2 == 1 {
			annotations = []string{"arn:aws:iam::111122223333:role/other", "false", "600", "app"}
		}
		region := ""
		if i%2 == 0 {
			region = "eu-west-1"
		}
		out = append(out, evaluatorArgs{pod, annotations[0], annotations[1], annotations[2], annotations[3], region, i%3 == 0})
	}
	return append(out, evaluatorArgs{pod: []byte(podJSON), credentials: true})
}

// The seeds must reach every policy of the default and example bundles, or the fuzz
// test compares little.
func TestEvaluatorSeedsReachEveryPolicy(t *testing.T) {
	p := withExamples(t, EvaluatorIR)
	changed := map[string]bool{}
	for _, a := range evaluatorSeedArgs() {
		res, err := p.Evaluate(context.Background(), a.request(), EvalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, pt := range res.Trace.Policies {
			if pt.Error != "" {
				t.Errorf("policy %s/%s failed: %s", pt.Bundle, pt.Policy, pt.Error)
			}
			if len(pt.Ops) > 0 {
				changed[pt.Bundle+"/"+pt.Policy] = true
			}
		}
	}
	for _, cp := range p.policies {
		if name := cp.bundle.Name() + "/" + cp.Policy.Name; !changed[name] {
			t.Errorf("no seed makes policy %s change a pod", name)
		}
	}
}

// FuzzEvaluatorsAgree evaluates pods with the default bundle and the example site
// bundles on the IR machine and on topdown: the patches, denials and errors must be
// the same.
func FuzzEvaluatorsAgree(f *testing.F) {
	for _, a := range evaluatorSeedArgs() {
		f.Add(a.pod, a.role, a.regional, a.expiration, a.skip, a.namespaceRegion, a.credentials)
	}
	ir, td := withExamples(f, EvaluatorIR), withExamples(f, EvaluatorTopdown)
	f.Fuzz(func(t *testing.T, pod []byte, role, regional, expiration, skip, namespaceRegion string, credentials bool) {
		req := func() Request {
			return evaluatorRequest(pod, role, regional, expiration, skip, namespaceRegion, credentials)
		}
		got, gotErr := ir.Evaluate(context.Background(), req(), EvalOptions{})
		want, wantErr := td.Evaluate(context.Background(), req(), EvalOptions{})
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("error %v, topdown %v", gotErr, wantErr)
		}
		if gotErr != nil {
			return
		}
		if deadline := func(r *Result) bool {
			return slices.ContainsFunc(r.Trace.Policies, func(p PolicyTrace) bool { return strings.Contains(p.Error, "per-request deadline") })
		}; deadline(got) || deadline(want) {
			return // a busy fuzzing machine, not an answer
		}
		if got.Denied != want.Denied {
			t.Fatalf("denied %q, topdown %q", got.Denied, want.Denied)
		}
		gp, _ := json.Marshal(got.Patch)
		wp, _ := json.Marshal(want.Patch)
		if !bytes.Equal(gp, wp) {
			t.Fatalf("patch\n%s\ntopdown\n%s", gp, wp)
		}
		// Which policies failed; the wording of an error may differ (the machine words
		// a conflict without topdown's list of locations).
		if !slices.EqualFunc(got.Trace.Policies, want.Trace.Policies, func(a, b PolicyTrace) bool { return (a.Error == "") == (b.Error == "") }) {
			t.Fatalf("policy errors differ:\n%+v\ntopdown\n%+v", got.Trace.Policies, want.Trace.Policies)
		}
	})
}

func init() {
	// Panics on the IR machine only: topdown gives built-ins a metrics registry, the
	// machine does not. A stand-in for a bug of the machine.
	rego.RegisterBuiltin1(&rego.Function{Name: "engine_test.machine_only_panic", Decl: types.NewFunction(types.Args(types.S), types.S)},
		func(bctx rego.BuiltinContext, s *ast.Term) (*ast.Term, error) {
			if bctx.Metrics == nil {
				panic("engine_test.machine_only_panic")
			}
			return s, nil
		})
}

// When the IR machine fails on a rule, the rule is evaluated by topdown: the pod gets
// the policy's answer, and the trace (hence the log line and the metric) says so.
func TestMachineFailureFallsBackToTopdown(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.mutations\n", map[string]string{"t.rego": `package t
mutations := [{"op": "set-label", "key": "picked", "value": engine_test.machine_only_panic("yes")}]
`})
	p := compileT(t, b)
	if p.policies[0].rule.plan == nil {
		t.Fatalf("the rule was not planned: %s", p.policies[0].rule.topdownReason)
	}
	res := evalT(t, p, Request{Object: []byte(podJSON), Attributes: PodCreate("ns", "")})
	pt := res.Trace.Policies[0]
	if pt.Error != "" || len(res.Patch) != 1 || res.Patch[0].Value != "yes" {
		t.Fatalf("error %q, patch %+v; want the label set by topdown", pt.Error, res.Patch)
	}
	if !strings.Contains(pt.MachineFailure, "engine_test.machine_only_panic") || !strings.Contains(strings.Join(pt.Notes, "\n"), "evaluated by topdown") {
		t.Errorf("the trace does not report the machine's failure: %+v", pt)
	}
}
