package irvm

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// A case's query is evaluated on each input by topdown and by the machine, which must
// agree: the same value, both undefined, or both an error.
var agreementCases = []struct {
	name   string
	rego   string
	query  string
	inputs []string
}{
	{
		name: "complete rules, else chains and defaults",
		rego: `package p
default grade := "none"
grade := "high" if input.n > 10
else := "mid" if input.n > 5
else := "low" if input.n >= 0
default flag := "unset"
flag := false if input.n == 3
`,
		query:  "[data.p.grade, data.p.flag]",
		inputs: []string{`{"n": 11}`, `{"n": 6}`, `{"n": 0}`, `{"n": -1}`, `{"n": 3}`, `{}`, `{"n": "x"}`},
	},
	{
		name: "a rule that is false is defined",
		rego: `package p
r := false if input.off
s if not r
`,
		query:  "data.p.s",
		inputs: []string{`{"off": true}`, `{}`},
	},
	{
		name: "partial sets over several bodies",
		rego: `package p
names contains n if some n in input.a
names contains upper(n) if { some n in input.b; startswith(n, "x") }
names contains "fixed"
`,
		query:  "data.p.names",
		inputs: []string{`{"a": ["q", "w"], "b": ["xa", "yb", "xq"]}`, `{"a": [], "b": []}`, `{}`, `{"a": "str"}`},
	},
	{
		name: "partial objects, and their conflicts",
		rego: `package p
m[k] := v if { some k, v in input.o }
m[k] := 1 if { some k in input.extra }
`,
		query: "data.p.m",
		inputs: []string{`{"o": {"a": 1, "b": {"c": [1, 2]}}, "extra": ["z"]}`,
			`{"o": {"a": 2}, "extra": ["a"]}`, `{"o": {"a": 1}, "extra": ["a"]}`, `{"o": []}`},
	},
	{
		name: "complete rule conflicts",
		rego: `package p
r := x if { some x in input.xs }
`,
		query:  "data.p.r",
		inputs: []string{`{"xs": [1]}`, `{"xs": [1, 1]}`, `{"xs": [1, 2]}`, `{"xs": []}`},
	},
	{
		name: "functions: several bodies, else, conflicts",
		rego: `package p
f(x) := "s" if is_string(x)
f(x) := "n" if is_number(x)
f(x) := "a" if { is_array(x); count(x) > 0 }
g(x) := 1 if x > 0
else := 2
h(x) := 1 if x
h(x) := 2 if x
out := [f(v) | some v in input.vs]
gs := [g(v) | some v in input.ns]
default hs := null
hs := h(input.b)
`,
		query:  "[data.p.out, data.p.gs, data.p.hs]",
		inputs: []string{`{"vs": ["a", 1, [1], [], {}], "ns": [1, -1, 0], "b": false}`, `{"vs": [], "ns": [], "b": true}`},
	},
	{
		name: "comprehensions and iteration order",
		rego: `package p
arr := [[k, v] | some k, v in input.o]
fromset := [x | some x in {z | some z in input.s}]
obj := {k: count(v) | some k, v in input.o; is_array(v)}
set := {y | some x in input.s; x > 1; y := x * 2}
nested := [[i, j] | some i in input.s; some j in input.s; i < j]
`,
		query:  "[data.p.arr, data.p.fromset, data.p.obj, data.p.set, data.p.nested]",
		inputs: []string{`{"o": {"b": [1], "a": [1, 2], "c": 3, "1": []}, "s": [3, 1, 2, 3]}`, `{"o": {}, "s": []}`},
	},
	{
		name: "not, every, some and in",
		rego: `package p
import rego.v1
default all_pos := false
all_pos if every x in input.xs { x > 0 }
default none_big := false
none_big if not some_big
some_big if { some x in input.xs; x > 100 }
has := 2 in input.xs
keyed := "a" in object.keys(input.o)
pairs := [x | some x in input.xs; not x in {2, 3}]
`,
		query:  "[data.p.all_pos, data.p.none_big, data.p.has, data.p.keyed, data.p.pairs]",
		inputs: []string{`{"xs": [1, 2, 3], "o": {"a": 1}}`, `{"xs": [-1, 200, 2], "o": {}}`, `{"xs": [], "o": {"b": 1}}`},
	},
	{
		name: "with on input and on rules",
		rego: `package p
base := input.x
derived := base * 2
over := y if y := derived with input.x as 10
mocked := y if y := derived with base as 7
nested := [derived, d2] if {
	d2 := derived with input.x as 1
}
fn(a) := a + base
called := y if y := fn(1) with input.x as 100
deep := y if y := input.a.b.c with input.a.b.c as "set"
`,
		query:  "[data.p.over, data.p.mocked, data.p.nested, data.p.called, data.p.deep, data.p.derived]",
		inputs: []string{`{"x": 3}`, `{"x": 3, "a": {"b": {"d": 1}}}`, `{"x": 3, "a": "scalar"}`},
	},
	{
		name: "with on functions and built-ins",
		rego: `package p
f(x) := x + 1
g(x) := x * 10
up(s) := upper(s)
out := y if y := f(input.n) with f as g
out2 := y if y := up(input.s) with upper as lower
out3 := y if y := count(input.xs) with count as 7
both := [f(input.n), y] if y := f(input.n) with f as g
`,
		query:  "[data.p.out, data.p.out2, data.p.out3, data.p.both]",
		inputs: []string{`{"n": 2, "s": "AbC", "xs": [1]}`, `{"n": "x", "s": 1, "xs": "no"}`},
	},
	{
		name: "built-ins: errors are undefined, false is a failed test",
		rego: `package p
default n := "undefined"
n := to_number(input.s)
default ok := false
ok if contains(input.s, "1")
default q := "undefined"
q := 10 / input.d
s := sprintf("%s-%d", [input.s, count(input.s)])
default j := "undefined"
j := concat(",", input.parts)
`,
		query: "[data.p.n, data.p.ok, data.p.q, data.p.s, data.p.j]",
		inputs: []string{`{"s": "12", "d": 2, "parts": ["a", "b"]}`, `{"s": "x", "d": 0, "parts": ["a", 1]}`,
			`{"s": "ü1", "d": 0.5, "parts": []}`},
	},
	{
		name: "equality, numbers and destructuring",
		rego: `package p
default same := false
same if input.a == input.b
default pair := null
pair := [b, a] if [a, b] := input.pair
small := [x | some x in input.nums; x < 1.5]
default idx := null
idx := input.arr[input.i]
default member := null
member := input.set_like[input.k]
`,
		query: "[data.p.same, data.p.pair, data.p.small, data.p.idx, data.p.member]",
		inputs: []string{`{"a": 1, "b": 1.0, "pair": [1, "x"], "nums": [1, 1.5, 2, 1.0], "arr": [5, 6], "i": 1, "set_like": {"k": "v"}, "k": "k"}`,
			`{"a": [1], "b": [1], "pair": [1], "nums": [], "arr": [5], "i": -1, "set_like": [1], "k": 0}`,
			`{"a": {"x": null}, "b": {"x": null}, "pair": "ab", "nums": [0], "arr": [], "i": 0.5, "set_like": null}`},
	},
	{
		name: "early exits and nested breaks",
		rego: `package p
first_big := x if {
	some x in input.xs
	x > 2
	not x == 5
}
default first_big := null
default any_neg := false
any_neg if { some x in input.xs; x < 0 }
shadow := [y | some x in input.xs; y := x; y > 1]
`,
		query:  "[data.p.any_neg, data.p.shadow, data.p.first_big]",
		inputs: []string{`{"xs": [1, 3, 5]}`, `{"xs": [5, -1]}`, `{"xs": [3, 4]}`, `{"xs": []}`},
	},
	{
		name: "ref heads, multi-value rules and lookups into them",
		rego: `package p
colors[name] contains c if { some f in input.fruits; name := f.name; some c in f.colors }
by.kind[k] := count(v) if { some k, v in input.kinds }
s contains x if some x in input.xs
has_a := "a" in s
looked := s["b"]
default looked2 := "none"
looked2 := s["zz"]
n := count(colors)
`,
		query: "[data.p.colors, data.p.by, data.p.has_a, object.get({\"v\": data.p.looked}, \"v\", null), data.p.looked2, data.p.n]",
		inputs: []string{`{"fruits": [{"name": "apple", "colors": ["red", "green"]}, {"name": "kiwi", "colors": []}], "kinds": {"x": [1, 2], "y": "ab"}, "xs": ["a", "b"]}`,
			`{"fruits": [], "kinds": {}, "xs": []}`, `{"fruits": [{"name": 1, "colors": [1]}], "kinds": {"z": 5}, "xs": ["b"]}`},
	},
	{
		name: "more built-ins, imports and functions over rules",
		rego: `package p
import data.p.lib
default total := 0
total := sum([x | some x in input.nums])
biggest := max(input.nums)
sorted := sort(input.nums)
merged := object.union(input.a, input.b)
joined := array.concat(input.nums, [0])
parts := split(input.s, ",")
trimmed := [trim_space(p) | some p in parts]
label := lib.tag(input.s)
keys := {k | some k, _ in input.a}
not_x if not input.a.x
`,
		query: "[data.p.total, object.get(data.p, \"biggest\", null), data.p.sorted, data.p.merged, data.p.joined, data.p.trimmed, data.p.label, data.p.keys, object.get(data.p, \"not_x\", false)]",
		inputs: []string{`{"nums": [3, 1, 2.5], "a": {"x": 1, "y": {"z": 1}}, "b": {"y": {"w": 2}}, "s": " a, b ,c"}`,
			`{"nums": [], "a": {}, "b": {"x": null}, "s": ""}`, `{"nums": ["1"], "a": {"x": false}, "b": {}, "s": "x"}`},
	},
	{
		name: "documents of whole packages",
		rego: `package p.lib
a := 1
b := [input.x]
c := {"k": [1, 2]} if input.x
`,
		query:  "[data.p.lib, data.p]",
		inputs: []string{`{"x": 1}`, `{}`},
	},
}

// libRego is a second module every case can import.
const libRego = `package p.lib
default tag(_) := "none"
tag(s) := concat("-", ["tag", s]) if startswith(s, " ")
tag(s) := "x" if s == "x"
`

func compile(t testing.TB, src string) *ast.Compiler {
	t.Helper()
	c, err := ast.CompileModulesWithOpt(map[string]string{"p.rego": src, "lib.rego": libRego}, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func topdownEval(t testing.TB, c *ast.Compiler, query string, input ast.Value) (ast.Value, bool, error) {
	t.Helper()
	rs, err := rego.New(rego.Query(query), rego.Compiler(c), rego.ParsedInput(input),
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	).Eval(context.Background())
	if err != nil || len(rs) == 0 {
		return nil, false, err
	}
	return rs[0].Expressions[0].Value.(*ast.Term).Value, true, nil
}

func TestMachineAgreesWithTopdown(t *testing.T) {
	for _, tc := range agreementCases {
		t.Run(tc.name, func(t *testing.T) {
			c := compile(t, tc.rego)
			q, err := Prepare(context.Background(), c, tc.query)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			for _, in := range tc.inputs {
				input := ast.MustParseTerm(in).Value
				want, wantOK, wantErr := topdownEval(t, c, tc.query, input)
				// Twice: the second run reuses the first one's pooled machine.
				for range 2 {
					got, ok, err := q.Eval(context.Background(), input)
					switch {
					case (err != nil) != (wantErr != nil):
						t.Errorf("input %s: error %v, topdown %v", in, err, wantErr)
					case ok != wantOK:
						t.Errorf("input %s: defined %v (%v), topdown %v (%v)", in, ok, got, wantOK, want)
					case ok && ast.Compare(got, want) != 0:
						t.Errorf("input %s:\n got %v\nwant %v", in, got, want)
					}
				}
			}
		})
	}
}

// The cases must between them run every statement the machine knows, or a statement
// could be wrong with no case to show it.
func TestAgreementCasesRunEveryStatement(t *testing.T) {
	seen := map[opcode]bool{}
	var visit func(b *block)
	visit = func(b *block) {
		for _, in := range b.insts {
			seen[in.op] = true
			if in.block != nil {
				visit(in.block)
			}
			for _, bb := range in.blocks {
				visit(bb)
			}
		}
	}
	for _, tc := range agreementCases {
		q, err := Prepare(context.Background(), compile(t, tc.rego), tc.query)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, b := range q.blocks {
			visit(b)
		}
		for _, fn := range q.funcs {
			for _, b := range fn.blocks {
				visit(b)
			}
		}
	}
	for op := opNop + 1; op <= opSetAdd; op++ {
		if !seen[op] && op != opNop {
			t.Errorf("no case plans opcode %d", op)
		}
	}
}

// An override is what a query's with on the rule gives, in with statements too.
func TestOverrideIsWith(t *testing.T) {
	c := compile(t, `package p
base := input.x
derived := base * 2
parts[k] := v if { some k, v in input.parts }
inner := y if y := derived with input.x as 100
whole := data.p.parts
out := [derived, inner, whole, parts.a]
`)
	q, err := Prepare(context.Background(), c, "data.p.out")
	if err != nil {
		t.Fatal(err)
	}
	base, ok := q.Rule("data.p.base")
	parts, ok2 := q.Rule("data.p.parts")
	if !ok || !ok2 {
		t.Fatalf("rules not found: %v %v", ok, ok2)
	}
	if _, ok := q.Rule("data.p.missing"); ok {
		t.Fatal("a rule the query does not read was found")
	}
	for _, in := range []string{`{"x": 3, "parts": {"a": 1}}`, `{"x": 3, "parts": {"b": 1}}`, `{}`} {
		input := ast.MustParseTerm(in).Value
		want, wantOK, wantErr := topdownEval(t, c, `data.p.out with data.p.base as 7 with data.p.parts as {"a": "over"}`, input)
		got, ok, err := q.Eval(context.Background(), input,
			Override{Rule: base, Value: ast.IntNumberTerm(7)}, Override{Rule: parts, Value: ast.MustParseTerm(`{"a": "over"}`)})
		if err != nil || wantErr != nil || ok != wantOK || (ok && ast.Compare(got, want) != 0) {
			t.Errorf("input %s: got %v %v %v, topdown %v %v %v", in, got, ok, err, want, wantOK, wantErr)
		}
	}
}

func TestPrepareRefusesWhatItCannotRun(t *testing.T) {
	for _, tc := range []struct{ rego, query, reason string }{
		{"package p\nr := time.now_ns()\n", "data.p.r", "not deterministic"},
		{"package p\nr := [p | walk(input, [p, _])]\n", "data.p.r", "relation"},
		{"package p\nr := data.q[input.k]\n", "data.p.r", "CallDynamic"},
	} {
		src := tc.rego
		if tc.reason == "CallDynamic" {
			src += "package q\n"
			src = "package p\nr := data.q[input.k]\n"
			c, err := ast.CompileModulesWithOpt(map[string]string{"p.rego": src, "q.rego": "package q\na := 1\nb := 2\n"},
				ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = Prepare(context.Background(), c, tc.query)
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("%q: error %v, want ErrUnsupported naming %s", src, err, tc.reason)
			}
			continue
		}
		_, err := Prepare(context.Background(), compile(t, src), tc.query)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%q: error %v, want ErrUnsupported naming %s", src, err, tc.reason)
		}
	}
}

func TestEvalStopsAtTheDeadline(t *testing.T) {
	// 200^3 iterations: far longer than the deadline.
	c := compile(t, "package p\nn := count([1 | some a in numbers.range(1, 200); some b in numbers.range(1, 200); some d in numbers.range(1, 200); a+b+d > 0])\n")
	q, err := Prepare(context.Background(), c, "data.p.n")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err = q.Eval(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "cancel") {
		t.Fatalf("error %v, want a cancellation", err)
	}
	// A cancelled context stops it before it starts.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, _, err := q.Eval(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// A built-in that iterates stops at the deadline too: a range of 3 million numbers takes
// a few hundred milliseconds.
func TestBuiltinsStopAtTheDeadline(t *testing.T) {
	q, err := Prepare(context.Background(), compile(t, "package p\nn := count(numbers.range(1, 3000000))\n"), "data.p.n")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := q.Eval(ctx, nil); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("error %v, want numbers.range's timeout", err)
	}
}

func TestConflictErrorsNameTheRule(t *testing.T) {
	c := compile(t, "package p\nr := x if { some x in input.xs }\nf(a) := x if { some x in a }\ng := f(input.xs)\no := {k: v | some k in [\"a\", \"a\"]; some v in input.xs}\n")
	for _, tc := range []struct{ query, want string }{
		{"data.p.r", "p.rego:2: eval_conflict_error: rule data.p.r produced conflicting values: 1 and 2"},
		{"data.p.g", "p.rego:3: eval_conflict_error: function data.p.f produced conflicting values for the same inputs: 1 and 2"},
		{"data.p.o", `p.rego:5: eval_conflict_error: object keys must be unique: "a" has the values 1 and 2`},
	} {
		q, err := Prepare(context.Background(), c, tc.query)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = q.Eval(context.Background(), ast.MustParseTerm(`{"xs": [1, 2]}`).Value)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: error %v, want %s", tc.query, err, tc.want)
		}
		if _, _, wantErr := topdownEval(t, c, tc.query, ast.MustParseTerm(`{"xs": [1, 2]}`).Value); wantErr == nil {
			t.Errorf("%s: topdown gives no error", tc.query)
		}
	}
}

func BenchmarkEval(b *testing.B) {
	tc := agreementCases[6] // comprehensions
	c := compile(b, tc.rego)
	q, err := Prepare(context.Background(), c, tc.query)
	if err != nil {
		b.Fatal(err)
	}
	input := ast.MustParseTerm(tc.inputs[0]).Value
	b.Run("irvm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := q.Eval(context.Background(), input); err != nil {
				b.Fatal(err)
			}
		}
	})
	pq, err := rego.New(rego.Query(tc.query), rego.Compiler(c)).PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("topdown", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pq.Eval(context.Background(), rego.EvalParsedInput(input)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func init() {
	rego.RegisterBuiltin1(&rego.Function{Name: "irvm_test.panic", Decl: types.NewFunction(types.Args(types.N), types.N)},
		func(_ rego.BuiltinContext, n *ast.Term) (*ast.Term, error) {
			if n.Value.Compare(ast.Number("0")) == 0 {
				panic("irvm_test.panic(0)")
			}
			return n, nil
		})
}

// A panic while running a plan is the machine's failure, reported as ErrInternal, and
// the machine it happened on is not used again.
func TestPanicIsAnInternalError(t *testing.T) {
	q, err := Prepare(context.Background(), compile(t, "package p\nr := irvm_test.panic(input.n)\n"), "data.p.r")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.Eval(context.Background(), ast.MustParseTerm(`{"n": 0}`).Value); !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "irvm_test.panic(0)") {
		t.Fatalf("error %v, want ErrInternal with the panic", err)
	}
	for range 3 {
		got, ok, err := q.Eval(context.Background(), ast.MustParseTerm(`{"n": 2}`).Value)
		if err != nil || !ok || ast.Compare(got, ast.Number("2")) != 0 {
			t.Fatalf("after a panic: %v %v %v", got, ok, err)
		}
	}
}

// FuzzMachineAgreesWithTopdown evaluates the agreement cases' queries on arbitrary
// inputs: the machine and topdown must agree on each.
func FuzzMachineAgreesWithTopdown(f *testing.F) {
	type prepared struct {
		c *ast.Compiler
		q *Query
	}
	cases := make([]prepared, len(agreementCases))
	for i, tc := range agreementCases {
		c := compile(f, tc.rego)
		q, err := Prepare(context.Background(), c, tc.query)
		if err != nil {
			f.Fatal(err)
		}
		cases[i] = prepared{c, q}
		for _, in := range tc.inputs {
			f.Add(uint8(i), in)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, in string) {
		i := int(which) % len(agreementCases)
		term, err := ast.ParseTerm(in)
		if err != nil || !isData(term.Value) {
			return // an input is data: no refs, calls or comprehensions
		}
		want, wantOK, wantErr := topdownEval(t, cases[i].c, agreementCases[i].query, term.Value)
		got, ok, err := cases[i].q.Eval(context.Background(), term.Value)
		switch {
		case (err != nil) != (wantErr != nil):
			t.Fatalf("case %q, input %s: error %v, topdown %v", agreementCases[i].name, in, err, wantErr)
		case ok != wantOK:
			t.Fatalf("case %q, input %s: defined %v (%v), topdown %v (%v)", agreementCases[i].name, in, ok, got, wantOK, want)
		case ok && ast.Compare(got, want) != 0:
			t.Fatalf("case %q, input %s:\n got %v\nwant %v", agreementCases[i].name, in, got, want)
		}
	})
}

// isData reports whether v is made of scalars, arrays, objects and sets only, as the
// engine's input is.
func isData(v ast.Value) bool {
	ok := true
	switch x := v.(type) {
	case ast.Null, ast.Boolean, ast.Number, ast.String:
	case *ast.Array:
		x.Foreach(func(t *ast.Term) { ok = ok && isData(t.Value) })
	case ast.Set:
		x.Foreach(func(t *ast.Term) { ok = ok && isData(t.Value) })
	case ast.Object:
		// The parser keeps a literal's repeated keys; a JSON document has one value each.
		unique := ast.NewObject()
		x.Foreach(func(k, t *ast.Term) {
			ok = ok && isData(k.Value) && isData(t.Value)
			unique.Insert(k, t)
		})
		ok = ok && unique.Len() == x.Len()
	default:
		ok = false
	}
	return ok
}
