// Package irvm evaluates a Rego query by running the plan OPA's compiler makes of it
// (its intermediate representation, package ir, the input of OPA's Wasm compiler)
// instead of walking the rules with OPA's interpreter (topdown).
//
// Why: the policies decide every env var, mount and volume of every pod, and topdown
// spends about 1-2 µs per expression and per rule it enters. A plan is a flat list of
// statements over numbered locals, so most of that bookkeeping (bindings, unification,
// per-rule caches) is gone; the built-ins are OPA's own, called with the same
// arguments, so their answers are the same.
//
// Prepare plans a query once; Query.Eval runs it, with no compilation on the way. A
// query whose plan uses what the machine does not run (see unsupported) is refused at
// Prepare, so the caller keeps topdown for it.
package irvm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Query is a planned query, safe for concurrent Evals.
type Query struct {
	blocks  []*block // the plan's
	nlocals int      // the plan's frame size
	funcs   []*function
	files   []string             // source files, for error locations
	rules   map[string]*function // the rules (functions of input and data) by ref
	pool    sync.Pool            // of *machine
}

// Override gives a rule's value for one evaluation, as `with <rule> as <value>` would:
// the rule is not evaluated, and everything that reads it sees Value.
type Override struct {
	Rule  int // from Query.Rule
	Value *ast.Term
}

// Rule returns the id of the rule ref (data.a.b) for an Override, and false when the
// plan does not evaluate that rule (the query does not depend on it) or it takes
// arguments.
func (q *Query) Rule(ref string) (int, bool) {
	fn, ok := q.rules[ref]
	if !ok {
		return 0, false
	}
	return fn.id, true
}

type function struct {
	id      int
	name    string
	params  []int32
	nlocals int
	blocks  []*block
	// memo: a function of input and data alone (a rule without arguments) gives one
	// value per evaluation, kept after its first call as topdown keeps a rule's value.
	memo bool
}

// ref is the rule or function's reference, data.a.b, without the planner's generation
// prefix (g0.).
func (fn *function) ref() string {
	if i := strings.IndexByte(fn.name, '.'); i > 0 && fn.name[0] == 'g' {
		return fn.name[i+1:]
	}
	return fn.name
}

type block struct{ insts []inst }

// operand is a local (local >= 0) or a constant term.
type operand struct {
	local int32
	term  *ast.Term
}

type opcode uint8

const (
	opNop opcode = iota
	opResultSetAdd
	opReturnLocal
	opBlock
	opBreak
	opCall
	opCallBuiltin
	opWith
	opAssignVar
	opAssignVarOnce
	opAssignInt
	opScan
	opNot
	opDot
	opLen
	opEqual
	opNotEqual
	opMakeNull
	opMakeNumber // MakeNumberInt and MakeNumberRef, the number made at Prepare
	opMakeArray
	opMakeObject
	opMakeSet
	opIsArray
	opIsObject
	opIsSet
	opIsDefined
	opIsUndefined
	opResetLocal
	opArrayAppend
	opObjectInsert
	opObjectInsertOnce
	opSetAdd
	opObjectMerge
)

// inst is one statement, its operands resolved at Prepare. Fields unused by an opcode
// stay zero.
type inst struct {
	op     opcode
	a, b   operand
	target int32 // the local written (for a scan: its key)
	value  int32 // a scan's value local
	n      int   // a break's index; an array's capacity
	block  *block
	blocks []*block
	fn     *function
	bi     *builtin
	args   []operand
	path   []*ast.Term // a with's path
	loc    *ir.Location
}

type builtin struct {
	name string
	f    topdown.BuiltinFunc
}

// ErrUnsupported wraps the reason a query cannot be run by the machine.
var ErrUnsupported = errors.New("not supported by the IR machine")

// ErrInternal wraps a failure of the machine itself (a panic while running a plan);
// the query's answer is then unknown, not wrong.
var ErrInternal = errors.New("IR machine failure")

// planCapture hands the plan of the query being prepared from OPA's target-plugin hook
// to Prepare. OPA has no other public way to get a plan for a compiled query; the hook
// is global, so preparations take turns (they happen at policy load, never per request).
var planCapture struct {
	sync.Mutex
	policy *ir.Policy
}

const targetName = "pod-identity-webhook-irvm"

type capturePlugin struct{}

func (capturePlugin) IsTarget(t string) bool { return t == targetName }

func (capturePlugin) PrepareForEval(_ context.Context, p *ir.Policy, _ ...rego.PrepareOption) (rego.TargetPluginEval, error) {
	planCapture.policy = p
	return capturePlugin{}, nil
}

func (capturePlugin) Eval(context.Context, *rego.EvalContext, ast.Value) (ast.Value, error) {
	return nil, errors.New("irvm: the capture target does not evaluate")
}

var registerOnce sync.Once

// Prepare plans query against the compiler's modules. The error wraps ErrUnsupported
// when the plan needs what the machine does not run.
func Prepare(ctx context.Context, compiler *ast.Compiler, query string) (*Query, error) {
	registerOnce.Do(func() { rego.RegisterPlugin(targetName, capturePlugin{}) })
	planCapture.Lock()
	defer planCapture.Unlock()
	planCapture.policy = nil
	_, err := rego.New(rego.Query(query), rego.Compiler(compiler), rego.Target(targetName)).PrepareForEval(ctx)
	policy := planCapture.policy
	planCapture.policy = nil
	if err != nil {
		return nil, fmt.Errorf("planning %s: %w", query, err)
	}
	if policy == nil || policy.Plans == nil || len(policy.Plans.Plans) != 1 {
		return nil, fmt.Errorf("planning %s: %w: expected one plan", query, ErrUnsupported)
	}
	return load(policy)
}

// loader turns an ir.Policy into the machine's instructions.
type loader struct {
	strings []*ast.Term
	funcs   map[string]*function
	maxLoc  int32
}

func load(policy *ir.Policy) (*Query, error) {
	l := &loader{funcs: map[string]*function{}}
	if policy.Static != nil {
		for _, s := range policy.Static.Strings {
			l.strings = append(l.strings, ast.StringTerm(s.Value))
		}
	}
	q := &Query{rules: map[string]*function{}}
	if policy.Static != nil {
		for _, f := range policy.Static.Files {
			q.files = append(q.files, f.Value)
		}
	}
	var funcs []*ir.Func
	if policy.Funcs != nil {
		funcs = policy.Funcs.Funcs
	}
	// Functions first as shells, so that calls can point at them in any order.
	for i, f := range funcs {
		fn := &function{id: i, name: f.Name, memo: len(f.Params) == 2}
		for _, p := range f.Params {
			fn.params = append(fn.params, int32(p))
		}
		l.funcs[f.Name] = fn
		q.funcs = append(q.funcs, fn)
		// The planner names a rule's function g<N>.<ref>, N counting the with
		// statements planned before it; the query's own rules are generation 0.
		if ref, ok := strings.CutPrefix(f.Name, "g0."); ok && fn.memo {
			q.rules[ref] = fn
		}
	}
	for i, f := range funcs {
		fn := q.funcs[i]
		l.maxLoc = int32(f.Return)
		for _, p := range fn.params {
			l.maxLoc = max(l.maxLoc, p)
		}
		for _, b := range f.Blocks {
			lb, err := l.block(b)
			if err != nil {
				return nil, fmt.Errorf("function %s: %w", f.Name, err)
			}
			fn.blocks = append(fn.blocks, lb)
		}
		fn.nlocals = int(l.maxLoc) + 1
	}
	l.maxLoc = int32(ir.Data)
	for _, b := range policy.Plans.Plans[0].Blocks {
		lb, err := l.block(b)
		if err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		q.blocks = append(q.blocks, lb)
	}
	q.nlocals = int(l.maxLoc) + 1
	q.pool.New = func() any { return newMachine(q) }
	return q, nil
}

func (l *loader) local(x ir.Local) int32 {
	l.maxLoc = max(l.maxLoc, int32(x))
	return int32(x)
}

func (l *loader) operand(o ir.Operand) (operand, error) {
	switch v := o.Value.(type) {
	case ir.Local:
		return operand{local: l.local(v)}, nil
	case ir.StringIndex:
		if int(v) < 0 || int(v) >= len(l.strings) {
			return operand{}, fmt.Errorf("string index %d out of range", v)
		}
		return operand{local: -1, term: l.strings[v]}, nil
	case ir.Bool:
		return operand{local: -1, term: ast.InternedTerm(bool(v))}, nil
	}
	return operand{}, fmt.Errorf("%w: operand %T", ErrUnsupported, o.Value)
}

func (l *loader) block(b *ir.Block) (*block, error) {
	out := &block{insts: make([]inst, 0, len(b.Stmts))}
	for _, s := range b.Stmts {
		in, err := l.stmt(s)
		if err != nil {
			return nil, err
		}
		in.loc = s.GetLocation()
		out.insts = append(out.insts, in)
	}
	return out, nil
}

func (l *loader) blocks(bs []*ir.Block) ([]*block, error) {
	out := make([]*block, 0, len(bs))
	for _, b := range bs {
		lb, err := l.block(b)
		if err != nil {
			return nil, err
		}
		out = append(out, lb)
	}
	return out, nil
}

func (l *loader) stmt(s ir.Stmt) (inst, error) {
	var err error
	op := func(o ir.Operand) operand {
		var r operand
		if err == nil {
			r, err = l.operand(o)
		}
		return r
	}
	loc := func(x ir.Local) operand { return operand{local: l.local(x)} }
	var in inst
	switch s := s.(type) {
	case *ir.NopStmt:
		in = inst{op: opNop}
	case *ir.ResultSetAddStmt:
		in = inst{op: opResultSetAdd, a: loc(s.Value)}
	case *ir.ReturnLocalStmt:
		in = inst{op: opReturnLocal, a: loc(s.Source)}
	case *ir.BlockStmt:
		in = inst{op: opBlock}
		in.blocks, err = l.blocks(s.Blocks)
	case *ir.BreakStmt:
		in = inst{op: opBreak, n: int(s.Index)}
	case *ir.CallStmt:
		in = inst{target: l.local(s.Result)}
		for _, a := range s.Args {
			in.args = append(in.args, op(a))
		}
		if fn, ok := l.funcs[s.Func]; ok {
			in.op, in.fn = opCall, fn
			if len(in.args) != len(fn.params) {
				err = fmt.Errorf("call of %s with %d arguments, it takes %d", s.Func, len(in.args), len(fn.params))
			}
		} else {
			in.op = opCallBuiltin
			in.bi, err = l.builtin(s.Func, len(in.args))
		}
	case *ir.WithStmt:
		in = inst{op: opWith, target: l.local(s.Local), a: op(s.Value)}
		for _, p := range s.Path {
			if p < 0 || p >= len(l.strings) {
				return inst{}, fmt.Errorf("with path string index %d out of range", p)
			}
			in.path = append(in.path, l.strings[p])
		}
		in.block, err = l.block(s.Block)
	case *ir.AssignVarStmt:
		in = inst{op: opAssignVar, a: op(s.Source), target: l.local(s.Target)}
	case *ir.AssignVarOnceStmt:
		in = inst{op: opAssignVarOnce, a: op(s.Source), target: l.local(s.Target)}
	case *ir.AssignIntStmt:
		in = inst{op: opAssignInt, a: operand{local: -1, term: ast.InternedTerm(int(s.Value))}, target: l.local(s.Target)}
	case *ir.ScanStmt:
		in = inst{op: opScan, a: loc(s.Source), target: l.local(s.Key), value: l.local(s.Value)}
		in.block, err = l.block(s.Block)
	case *ir.NotStmt:
		in = inst{op: opNot}
		in.block, err = l.block(s.Block)
	case *ir.DotStmt:
		in = inst{op: opDot, a: op(s.Source), b: op(s.Key), target: l.local(s.Target)}
	case *ir.LenStmt:
		in = inst{op: opLen, a: op(s.Source), target: l.local(s.Target)}
	case *ir.EqualStmt:
		in = inst{op: opEqual, a: op(s.A), b: op(s.B)}
	case *ir.NotEqualStmt:
		in = inst{op: opNotEqual, a: op(s.A), b: op(s.B)}
	case *ir.MakeNullStmt:
		in = inst{op: opMakeNull, target: l.local(s.Target)}
	case *ir.MakeNumberIntStmt:
		in = inst{op: opMakeNumber, a: operand{local: -1, term: ast.InternedTerm(int(s.Value))}, target: l.local(s.Target)}
	case *ir.MakeNumberRefStmt:
		if s.Index < 0 || s.Index >= len(l.strings) {
			return inst{}, fmt.Errorf("number string index %d out of range", s.Index)
		}
		n := ast.NewTerm(ast.Number(l.strings[s.Index].Value.(ast.String)))
		in = inst{op: opMakeNumber, a: operand{local: -1, term: n}, target: l.local(s.Target)}
	case *ir.MakeArrayStmt:
		in = inst{op: opMakeArray, n: int(max(s.Capacity, 0)), target: l.local(s.Target)}
	case *ir.MakeObjectStmt:
		in = inst{op: opMakeObject, target: l.local(s.Target)}
	case *ir.MakeSetStmt:
		in = inst{op: opMakeSet, target: l.local(s.Target)}
	case *ir.IsArrayStmt:
		in = inst{op: opIsArray, a: op(s.Source)}
	case *ir.IsObjectStmt:
		in = inst{op: opIsObject, a: op(s.Source)}
	case *ir.IsSetStmt:
		in = inst{op: opIsSet, a: op(s.Source)}
	case *ir.IsDefinedStmt:
		in = inst{op: opIsDefined, a: loc(s.Source)}
	case *ir.IsUndefinedStmt:
		in = inst{op: opIsUndefined, a: loc(s.Source)}
	case *ir.ResetLocalStmt:
		in = inst{op: opResetLocal, target: l.local(s.Target)}
	case *ir.ArrayAppendStmt:
		in = inst{op: opArrayAppend, a: op(s.Value), target: l.local(s.Array)}
	case *ir.ObjectInsertStmt:
		in = inst{op: opObjectInsert, a: op(s.Key), b: op(s.Value), target: l.local(s.Object)}
	case *ir.ObjectInsertOnceStmt:
		in = inst{op: opObjectInsertOnce, a: op(s.Key), b: op(s.Value), target: l.local(s.Object)}
	case *ir.ObjectMergeStmt:
		in = inst{op: opObjectMerge, a: loc(s.A), b: loc(s.B), target: l.local(s.Target)}
	case *ir.SetAddStmt:
		in = inst{op: opSetAdd, a: op(s.Value), target: l.local(s.Set)}
	default:
		// CallDynamicStmt: a rule chosen by a variable path (data.x[input.k]), rare in
		// admission policies.
		return inst{}, fmt.Errorf("%w: statement %s", ErrUnsupported, strings.TrimPrefix(fmt.Sprintf("%T", s), "*ir."))
	}
	return in, err
}

// builtin resolves a built-in the plan calls. Refused: those whose answer is not a
// function of their arguments (time, randomness, network; the admission sandbox
// forbids them anyway), relations (more than one answer), and print, whose hook is
// topdown's.
func (l *loader) builtin(name string, nargs int) (*builtin, error) {
	decl, ok := ast.BuiltinMap[name]
	f := topdown.GetBuiltin(name)
	switch {
	case !ok || f == nil:
		return nil, fmt.Errorf("%w: unknown built-in %s", ErrUnsupported, name)
	case decl.Nondeterministic:
		return nil, fmt.Errorf("%w: built-in %s is not deterministic", ErrUnsupported, name)
	case decl.Relation:
		return nil, fmt.Errorf("%w: built-in %s is a relation", ErrUnsupported, name)
	case name == ast.InternalPrint.Name || name == ast.Print.Name:
		return nil, fmt.Errorf("%w: print", ErrUnsupported)
	case decl.Decl != nil && nargs != decl.Decl.Arity():
		return nil, fmt.Errorf("%w: built-in %s called with %d arguments, declared with %d", ErrUnsupported, name, nargs, decl.Decl.Arity())
	}
	return &builtin{name: name, f: f}, nil
}
