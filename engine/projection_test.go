package engine

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// paths lists a projection's leaves as "a.b" strings ("*" for the whole document).
func (p *projection) paths() []string {
	var out []string
	var walk func(n *projection, prefix []string)
	walk = func(n *projection, prefix []string) {
		if n.all {
			if len(prefix) == 0 {
				out = append(out, "*")
			} else {
				out = append(out, strings.Join(prefix, "."))
			}
			return
		}
		for k, c := range n.children {
			walk(c, append(append([]string{}, prefix...), k))
		}
	}
	walk(p, nil)
	sort.Strings(out)
	return out
}

func TestRegoProjection(t *testing.T) {
	cases := []struct {
		rego string
		want []string
	}{
		{`m := input.object.metadata.labels["a"]`, []string{"metadata.labels.a"}},
		{`m := input.object.metadata.labels[x] if x := "a"`, []string{"metadata.labels"}},
		{`m := [c.env | some c in input.object.spec.containers]`, []string{"spec.containers"}},
		{`m := object.get(input.object, ["spec", "nodeSelector"], {})`, []string{"spec.nodeSelector"}},
		{`m := object.get(input.object.metadata, "annotations", {})`, []string{"metadata.annotations"}},
		{`m := object.get(input.object, ["spec", x], {}) if x := "a"`, []string{"spec"}},
		{`m := input.object`, []string{"*"}},
		{`m := input`, []string{"*"}},
		{`m := input[x] if x := "object"`, []string{"*"}},
		{`m := input.object[x] if x := "spec"`, []string{"*"}},
		{`m := input.serviceAccount.metadata.name`, nil},
		{`m := json.marshal(input.object.spec)`, []string{"spec"}},
		{`m := count(input.object.spec.volumes) + count(input.object.status.conditions)`, []string{"spec.volumes", "status.conditions"}},
		{`m := object.get(input.object, "metadata", {}).name`, []string{"metadata"}},
		{`f := input.object.metadata.name` + "\n" + `m := v if v := f with input.object.metadata.name as input.object.spec.nodeName`,
			[]string{"metadata.name", "spec.nodeName"}},
	}
	for _, tc := range cases {
		t.Run(tc.rego, func(t *testing.T) {
			m := ast.MustParseModuleWithOpts("package t\n"+tc.rego, ast.ParserOptions{RegoVersion: ast.RegoV1})
			p := newProjection()
			addRegoRefs(p, m, varObject)
			p.freeze()
			if got := p.paths(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("paths = %v, want %v", got, tc.want)
			}
		})
	}
}

// Rego gets only the fields of input.request the rules read (Attributes.toValue),
// found in the compiled rules as projectionsFor does.
func TestRequestFieldsRead(t *testing.T) {
	for _, tc := range []struct {
		rego string
		want []string // nil: all
	}{
		{`m := input.request.namespace`, []string{"namespace"}},
		{`m := [input.request.userInfo.username, input.request.operation]`, []string{"operation", "userInfo"}},
		{`m := input.object.metadata.name`, []string{}},
		{`m := input.request`, nil},
		{`m := object.get(input.request, "namespace", "")`, nil},
		{`m := input.request[x] if x := "uid"`, nil},
		{`m := input[x] if x := "request"`, nil},
		{`m := input`, nil},
		{`f(x) := x.request.uid` + "\n" + `m := f(input)`, nil},
		{`f := input.request.uid` + "\n" + `m := v if v := f with input.request.uid as input.request.name`, []string{"name", "uid"}},
	} {
		t.Run(tc.rego, func(t *testing.T) {
			m := ast.MustParseModuleWithOpts("package t\n"+tc.rego, ast.ParserOptions{RegoVersion: ast.RegoV1})
			c := ast.NewCompiler()
			if c.Compile(map[string]*ast.Module{"t": m}); c.Failed() {
				t.Fatal(c.Errors)
			}
			p := newProjection()
			for _, r := range c.Modules["t"].Rules {
				addRegoRefs(p, r, varRequest)
			}
			var got []string
			if !p.all {
				got = []string{}
				for k := range p.children {
					got = append(got, k)
				}
				sort.Strings(got)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("fields = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestCELProjection(t *testing.T) {
	c, err := newCELCompiler(DefaultCELCostLimit)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		expr       string
		usesObject bool
		want       []string
	}{
		{`object.spec.containers.exists(x, x.name == 'a')`, true, []string{"spec.containers"}},
		{`has(object.metadata.labels) && object.metadata.labels['app'] == 'x'`, true, []string{"metadata.labels"}},
		{`object['spec']['nodeName'] == 'n'`, true, []string{"spec.nodeName"}},
		{`object.metadata.name.startsWith('x')`, true, []string{"metadata.name"}},
		{`object == null`, true, []string{"*"}},
		{`serviceAccount != null && params.x == 'y'`, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			cc, err := c.compile(MatchCondition{Name: "c", Expression: tc.expr})
			if err != nil {
				t.Fatal(err)
			}
			p := newProjection()
			for _, path := range cc.objectPaths {
				p.add(path)
			}
			p.freeze()
			if cc.usesObject != tc.usesObject || !reflect.DeepEqual(p.paths(), tc.want) {
				t.Fatalf("usesObject=%v paths=%v, want %v %v", cc.usesObject, p.paths(), tc.usesObject, tc.want)
			}
		})
	}
}

// The default bundle reads a handful of pod fields; managedFields, ownerReferences,
// tolerations and status are never decoded.
func TestDefaultBundleProjection(t *testing.T) {
	p := compileDefault(t, Options{})
	want := []string{"metadata.annotations", "metadata.generateName", "metadata.labels", "metadata.name", "metadata.namespace",
		// Only the two OS labels of the nodeSelector (windows.rego names them as constant keys).
		"spec.nodeSelector.beta.kubernetes.io/os", "spec.nodeSelector.kubernetes.io/os",
		"spec.securityContext", "spec.serviceAccountName"}
	if got := p.proj.paths(); !reflect.DeepEqual(got, want) {
		t.Fatalf("default bundle projection = %v\nwant %v", got, want)
	}
	// Containers and volumes only for the mutation vocabulary: element by element.
	if got := p.proj.children["spec"].shallowKeys; !reflect.DeepEqual(got, []string{"containers", "initContainers", "volumes"}) {
		t.Fatalf("shallow lists = %v", got)
	}
	// Rego reads the index, not the containers.
	wantRego := []string{"metadata.annotations", "metadata.generateName", "metadata.labels", "metadata.name", "metadata.namespace",
		"spec.nodeSelector.beta.kubernetes.io/os", "spec.nodeSelector.kubernetes.io/os", "spec.serviceAccountName"}
	if got := p.regoProj.paths(); !reflect.DeepEqual(got, wantRego) {
		t.Fatalf("default bundle Rego projection = %v\nwant %v", got, wantRego)
	}
	if !reflect.DeepEqual(p.requestFields, []string{"namespace"}) {
		t.Fatalf("default bundle reads request fields %#v, want only namespace", p.requestFields)
	}
	for _, pol := range p.policies {
		if pol.conditionsUseObject {
			t.Errorf("policy %s: its conditions read the pod, so unmatched pods get decoded", pol.Policy.Name)
		}
	}
}

// A pod no policy matches is not decoded at all, so even malformed JSON passes.
func TestUnmatchedPodIsNotDecoded(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  match:\n  - {name: has-sa, expression: serviceAccount != null}\n  rule: data.t.m\n",
		map[string]string{"t.rego": "package t\nm := []\n"})
	res, err := compileT(t, b).Evaluate(context.Background(), Request{Object: []byte(`{"not": "json"`)}, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if obj, _ := res.Object(); obj != nil || res.Mutated() {
		t.Fatalf("object=%v mutated=%v", obj, res.Mutated())
	}
	// When a policy matches, the malformed pod is reported.
	_, err = compileT(t, b).Evaluate(context.Background(), Request{Object: []byte(`{"not": "json"`), ServiceAccount: &ServiceAccount{Name: "s"}}, EvalOptions{})
	var ie *InputError
	if !asInputError(err, &ie) {
		t.Fatalf("err = %v, want an InputError", err)
	}
}

// A bundle whose rules read whole containers gets them decoded fully.
func TestSiteRuleReadingContainersDecodesThemFully(t *testing.T) {
	b := bundleOf(t, "policies:\n- name: p\n  rule: data.t.m\n", map[string]string{"t.rego": `package t
m := [{"op": "set-label", "key": "images", "value": concat(",", [c.image | some c in input.object.spec.containers])}]
`})
	p := compileT(t, b)
	if got := p.proj.children["spec"].shallowKeys; !reflect.DeepEqual(got, []string{"initContainers", "volumes"}) {
		t.Fatalf("shallow lists = %v, want containers decoded fully", got)
	}
	res := evalT(t, p, saRequest())
	if len(res.Failed()) > 0 || mustJSON(res.Patch) != `[{"op":"add","path":"/metadata/labels/images","value":"a,s"}]` {
		t.Fatalf("patch %s, failed %v", mustJSON(res.Patch), res.Failed())
	}
}

func TestIndex(t *testing.T) {
	doc, err := decodeObject([]byte(`{"spec": {
		"initContainers": [{"name": "init", "env": [{"name": "A"}], "volumeMounts": [{"name": "m"}]}],
		"containers": [{"name": "app", "env": [{"name": "B"}, {"name": "C"}, {"value": "no name"}]}, "not a container", {"name": "side"}],
		"volumes": [{"name": "v1", "emptyDir": {}}, {"name": "v2"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"containers": [` +
		`{"env": {"A"}, "index": 0, "list": "initContainers", "mounts": {"m"}, "name": "init"}, ` +
		`{"env": {"B", "C"}, "index": 0, "list": "containers", "mounts": set(), "name": "app"}, ` +
		`{"env": set(), "index": 2, "list": "containers", "mounts": set(), "name": "side"}], ` +
		`"volumes": {"v1", "v2"}}`
	if got := buildIndex(doc, nil); got.Compare(ast.MustParseTerm(want).Value) != 0 {
		t.Fatalf("index = %v\nwant    %v", got, want)
	}
}
