package engine

import (
	"path/filepath"

	"bytes"
	"context"
	"encoding/json"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
	"slices"
	"strings"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
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
		[]byte(`{"metadata":{"name":"x","labels":{"beta.kubernetes.io/os":"windows"}},"spec":{"containers":[{"name":"c","env":[{"name":"AWS_WEB_IDENTITY_TOKEN_FILE","valueFrom":{}}]}],"restartPolicy":"Never"}}`))
	return out
}

// FuzzEvaluatorsAgree evaluates pods with the default bundle and the example site
// bundles on the IR machine and on topdown: the patches, denials and errors must be
// the same.
func FuzzEvaluatorsAgree(f *testing.F) {
	for i, pod := range evaluatorSeeds() {
		annotations := []string{"arn:aws:iam::111122223333:role/r", "true", "86400", ""}
		if i%2 == 1 {
			annotations = []string{"arn:aws:iam::111122223333:role/other", "false", "600", "app"}
		}
		f.Add(pod, annotations[0], annotations[1], annotations[2], annotations[3], i%3 == 0)
	}
	f.Add([]byte(podJSON), "", "", "", "", true)
	// The default bundle and, after it, every example site bundle: site rules are where
	// unusual Rego appears.
	bundles := []*Bundle{}
	def, err := LoadFS(policies.FS, "embedded default bundle")
	if err != nil {
		f.Fatal(err)
	}
	bundles = append(bundles, def)
	dirs, _ := filepath.Glob(filepath.Join("..", "examples", "*"))
	for _, dir := range dirs {
		b, err := LoadDir(dir)
		if err != nil {
			f.Fatal(err)
		}
		bundles = append(bundles, b)
	}
	if len(bundles) < 5 {
		f.Fatalf("found %d bundles, want the default and at least 4 examples", len(bundles))
	}
	compile := func(ev Evaluator) *Program {
		p, err := Compile(context.Background(), bundles, Options{Params: benchParams, MemoSize: -1, Evaluator: ev})
		if err != nil {
			f.Fatal(err)
		}
		return p
	}
	ir, td := compile(EvaluatorIR), compile(EvaluatorTopdown)
	f.Fuzz(func(t *testing.T, pod []byte, role, regional, expiration, skip string, credentials bool) {
		annotations := map[string]string{}
		for k, v := range map[string]string{"role-arn": role, "sts-regional-endpoints": regional, "token-expiration": expiration, "skip-containers": skip} {
			if v != "" {
				annotations["eks.amazonaws.com/"+k] = v
			}
		}
		req := func() Request {
			r := Request{Object: pod, Attributes: PodCreate("ns", ""),
				ServiceAccount: &ServiceAccount{Name: "sa", Namespace: "ns", ResourceVersion: "1", Annotations: annotations}}
			if credentials {
				r.Identities.ContainerCredentials = &ContainerCredentialsIdentity{Namespace: "ns", ServiceAccount: "sa"}
			}
			return r
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
