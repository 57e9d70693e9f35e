package irvm

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Block outcomes besides a break index (>= 0: leave that many more enclosing blocks;
// 0 is also how a block ends when a statement is undefined).
const (
	ranToEnd = -1 // every statement was defined
	returned = -2 // a function's ReturnLocal: leave the function
	aborted  = -3 // an error, in machine.err
	endScan  = -4 // (within scan) the scan is over, the block around it goes on
)

// cancelCheckEvery is how many calls and loop iterations pass between looks at the
// context, so that a runaway policy stops at its deadline without a look per statement.
const cancelCheckEvery = 256

// machine is one evaluation's state; Queries pool them.
type machine struct {
	q     *Query
	stack []*ast.Term // frames of the calls in progress
	high  int         // the most of stack used, cleared on release
	memo  []memoEntry // per function id
	// overrides are the rule values Eval was given; they hold inside with statements
	// too, as a query's with on a rule does.
	overrides []Override
	ret       *ast.Term // the value a ReturnLocal returned
	out       *ast.Term // a built-in's answer
	onOut     func(*ast.Term) error
	args      []*ast.Term // built-in operands
	bctx      topdown.BuiltinContext
	cancel    ctxCancel // holds the evaluation's context
	steps     int
	err       error
	first     *ast.Term // the first result added
	fn        *function // the function being run; nil in the plan's own blocks
}

// override puts the overrides in the memo, where a rule's value is kept after its
// first call (see function.memo): an overridden rule is never called.
func (m *machine) override() {
	for _, o := range m.overrides {
		if o.Rule >= 0 && o.Rule < len(m.memo) && m.q.funcs[o.Rule].memo {
			m.memo[o.Rule] = memoEntry{done: true, v: o.Value}
		}
	}
}

// ctxCancel lets OPA's iterating built-ins (numbers.range, concat, replace, ...) stop
// at the context's end, as they do under topdown.
type ctxCancel struct{ ctx context.Context }

func (c *ctxCancel) Cancel()         {}
func (c *ctxCancel) Cancelled() bool { return c.ctx.Err() != nil }

type memoEntry struct {
	done bool
	v    *ast.Term
}

func newMachine(q *Query) *machine {
	m := &machine{q: q, memo: make([]memoEntry, len(q.funcs)), stack: make([]*ast.Term, 0, 1024)}
	m.onOut = func(t *ast.Term) error {
		m.out = t
		return nil
	}
	return m
}

// Eval runs the query with input and the rule values given, and returns the value of
// its first expression in its first result, and false when the query is undefined.
// Errors are the ones topdown reports as errors: conflicts (a rule or key with two
// values), built-in halts, and the context's end. Built-in errors make the call
// undefined, as topdown does by default.
func (q *Query) Eval(ctx context.Context, input ast.Value, overrides ...Override) (_ ast.Value, _ bool, err error) {
	m := q.pool.Get().(*machine)
	defer func() {
		// A panic here is a bug of the machine, not of the policy: the caller gets an
		// ErrInternal and can evaluate the rule another way.
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %v", ErrInternal, v)
			m = newMachine(q) // the panicked one's state is unknown: not pooled again
		}
		m.release()
	}()
	m.overrides = overrides
	m.override()
	m.cancel.ctx = ctx
	m.bctx = topdown.BuiltinContext{Context: ctx, Cancel: &m.cancel}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	frame := m.push(q.nlocals)
	if input != nil {
		frame[ir.Input] = ast.NewTerm(input)
	}
	frame[ir.Data] = emptyData
	for _, b := range q.blocks {
		if m.exec(b, frame) == aborted {
			return nil, false, m.err
		}
	}
	if m.first == nil {
		return nil, false, nil
	}
	// A query's result binds each expression to a key "^termN"; a one-expression
	// query's first result has one.
	obj, ok := m.first.Value.(ast.Object)
	if !ok || obj.Len() != 1 {
		return nil, false, fmt.Errorf("irvm: unexpected result %v", m.first)
	}
	var v ast.Value
	obj.Foreach(func(_, t *ast.Term) { v = t.Value })
	return v, true, nil
}

var emptyData = ast.NewTerm(ast.NewObject())

func (m *machine) release() {
	clear(m.stack[:m.high])
	m.stack, m.high = m.stack[:0], 0
	clear(m.memo)
	m.ret, m.out, m.first, m.err, m.overrides, m.fn = nil, nil, nil, nil, nil, nil
	clear(m.args[:cap(m.args)])
	m.args = m.args[:0]
	m.bctx, m.cancel.ctx = topdown.BuiltinContext{}, nil
	m.steps = 0
	m.q.pool.Put(m)
}

// push returns a frame of n cleared locals on the stack. A frame a caller holds stays
// valid when the stack grows: it keeps the old array, and only its owner uses it.
func (m *machine) push(n int) []*ast.Term {
	base := len(m.stack)
	if base+n > cap(m.stack) {
		m.stack = append(make([]*ast.Term, 0, 2*cap(m.stack)+n), m.stack...)
	}
	m.stack = m.stack[:base+n]
	m.high = max(m.high, base+n)
	f := m.stack[base : base+n : base+n]
	clear(f)
	return f
}

func (m *machine) pop(n int) { m.stack = m.stack[:len(m.stack)-n] }

// fail ends the evaluation with an error at the statement's location, worded as
// topdown words it.
func (m *machine) fail(in *inst, format string, args ...any) int {
	e := &topdown.Error{Code: topdown.ConflictErr, Message: fmt.Sprintf(format, args...)}
	if in.loc != nil && in.loc.Row > 0 {
		e.Location = &ast.Location{File: m.file(in.loc), Row: in.loc.Row, Col: in.loc.Col}
	}
	m.err = e
	return aborted
}

// conflict fails an AssignVarOnce: the function being run (a rule, or a Rego
// function) gave two values.
func (m *machine) conflict(in *inst, a, b *ast.Term) int {
	switch {
	case m.fn == nil:
		return m.fail(in, "complete rules must not produce multiple outputs: %v and %v", a, b)
	case m.fn.memo:
		return m.fail(in, "rule %s produced conflicting values: %v and %v", m.fn.ref(), a, b)
	}
	return m.fail(in, "function %s produced conflicting values for the same inputs: %v and %v", m.fn.ref(), a, b)
}

func (m *machine) file(loc *ir.Location) string {
	if files := m.q.files; loc.File >= 0 && loc.File < len(files) {
		return files[loc.File]
	}
	return "?"
}

// tick counts a call or an iteration, and looks at the context now and then.
func (m *machine) tick() bool {
	m.steps++
	if m.steps%cancelCheckEvery != 0 {
		return true
	}
	if err := m.cancel.ctx.Err(); err != nil {
		m.err = &topdown.Error{Code: topdown.CancelErr, Message: "caller cancelled query execution: " + err.Error()}
		return false
	}
	return true
}

func val(f []*ast.Term, o operand) *ast.Term {
	if o.local >= 0 {
		return f[o.local]
	}
	return o.term
}

func equal(a, b *ast.Term) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a == b || ast.Compare(a.Value, b.Value) == 0
}

// exec runs a block and returns ranToEnd, returned, aborted, or how many more
// enclosing blocks to leave.
func (m *machine) exec(b *block, f []*ast.Term) int {
	for i := range b.insts {
		in := &b.insts[i]
		switch in.op {
		case opNop:
		case opResultSetAdd:
			if v := f[in.a.local]; v != nil && m.first == nil {
				m.first = v
			}
		case opReturnLocal:
			m.ret = f[in.a.local]
			return returned
		case opBlock:
			for _, bb := range in.blocks {
				switch c := m.exec(bb, f); {
				case c == returned || c == aborted:
					return c
				case c >= 1:
					return c - 1
				}
			}
		case opBreak:
			return in.n
		case opCall:
			if !m.tick() {
				return aborted
			}
			v, c := m.call(in, f)
			if c == aborted {
				return aborted
			}
			if v == nil {
				return 0
			}
			f[in.target] = v
		case opCallBuiltin:
			v, c := m.callBuiltin(in, f)
			if c == aborted {
				return aborted
			}
			if v == nil {
				return 0
			}
			f[in.target] = v
		case opWith:
			saved, savedMemo := f[in.target], m.memo
			f[in.target] = upsert(saved, in.path, val(f, in.a))
			m.memo = make([]memoEntry, len(m.q.funcs))
			m.override()
			c := m.exec(in.block, f)
			f[in.target], m.memo = saved, savedMemo
			switch {
			case c == returned || c == aborted:
				return c
			case c == 0:
				return 0
			case c >= 1:
				return c - 1
			}
		case opAssignVar:
			f[in.target] = val(f, in.a)
		case opAssignVarOnce:
			v := val(f, in.a)
			if cur := f[in.target]; cur != nil {
				if !equal(cur, v) {
					return m.conflict(in, cur, v)
				}
				continue
			}
			f[in.target] = v
		case opAssignInt, opMakeNumber:
			f[in.target] = in.a.term
		case opScan:
			if c := m.scan(in, f); c != ranToEnd {
				return c
			}
		case opNot:
			switch c := m.exec(in.block, f); {
			case c == returned || c == aborted:
				return c
			case c == ranToEnd:
				return 0
			case c >= 1:
				return c - 1
			}
		case opDot:
			v := dot(val(f, in.a), val(f, in.b))
			if v == nil {
				return 0
			}
			f[in.target] = v
		case opLen:
			f[in.target] = ast.InternedTerm(length(val(f, in.a)))
		case opEqual:
			if !equal(val(f, in.a), val(f, in.b)) {
				return 0
			}
		case opNotEqual:
			if equal(val(f, in.a), val(f, in.b)) {
				return 0
			}
		case opMakeNull:
			f[in.target] = ast.InternedNullTerm
		case opMakeArray:
			f[in.target] = ast.NewTerm(ast.NewArray(make([]*ast.Term, 0, in.n)...))
		case opMakeObject:
			f[in.target] = ast.NewTerm(ast.NewObject())
		case opMakeSet:
			f[in.target] = ast.NewTerm(ast.NewSet())
		case opIsArray:
			if v := val(f, in.a); v == nil || !isArray(v.Value) {
				return 0
			}
		case opIsObject:
			if v := val(f, in.a); v == nil || !isObject(v.Value) {
				return 0
			}
		case opIsSet:
			if v := val(f, in.a); v == nil || !isSet(v.Value) {
				return 0
			}
		case opIsDefined:
			if f[in.a.local] == nil {
				return 0
			}
		case opIsUndefined:
			if f[in.a.local] != nil {
				return 0
			}
		case opResetLocal:
			f[in.target] = nil
		case opArrayAppend:
			arr, ok := valueOf(f[in.target]).(*ast.Array)
			if !ok {
				return m.fail(in, "array append to %s", valueName(f[in.target]))
			}
			f[in.target] = ast.NewTerm(arr.Append(val(f, in.a)))
		case opObjectInsert, opObjectInsertOnce:
			obj, ok := valueOf(f[in.target]).(ast.Object)
			if !ok {
				return m.fail(in, "object insert into %s", valueName(f[in.target]))
			}
			k, v := val(f, in.a), val(f, in.b)
			if in.op == opObjectInsertOnce {
				if cur := obj.Get(k); cur != nil {
					if !equal(cur, v) {
						return m.fail(in, "object keys must be unique: %v has the values %v and %v", k, cur, v)
					}
					continue
				}
			}
			obj.Insert(k, v)
		case opObjectMerge:
			f[in.target] = merge(f[in.a.local], f[in.b.local])
		case opSetAdd:
			set, ok := valueOf(f[in.target]).(ast.Set)
			if !ok {
				return m.fail(in, "set add to %s", valueName(f[in.target]))
			}
			set.Add(val(f, in.a))
		}
	}
	return ranToEnd
}

// scan runs a ScanStmt's block for each element of its source. The block sits in two
// labels, as the Wasm compiler lays it out: breaking one (0) goes on to the next
// element, two (1) ends the scan, more leave the blocks around the scan.
func (m *machine) scan(in *inst, f []*ast.Term) int {
	src := f[in.a.local]
	if src == nil {
		return ranToEnd
	}
	// step returns ranToEnd to go on, or what the scan returns.
	step := func(k, v *ast.Term) int {
		if !m.tick() {
			return aborted
		}
		f[in.target], f[in.value] = k, v
		switch c := m.exec(in.block, f); {
		case c == returned || c == aborted:
			return c
		case c == 1:
			return endScan
		case c >= 2:
			return c - 2
		}
		return ranToEnd
	}
	out := ranToEnd
	switch s := src.Value.(type) {
	case *ast.Array:
		for i := range s.Len() {
			if out = step(ast.InternedTerm(i), s.Elem(i)); out != ranToEnd {
				break
			}
		}
	case ast.Object:
		// Keys in sorted order, as topdown iterates.
		_ = s.Iter(func(k, v *ast.Term) error {
			if out = step(k, v); out != ranToEnd {
				return errStopScan
			}
			return nil
		})
	case ast.Set:
		for _, e := range s.Slice() {
			if out = step(e, e); out != ranToEnd {
				break
			}
		}
	}
	if out == endScan {
		return ranToEnd
	}
	return out
}

var errStopScan = errors.New("stop")

func (m *machine) call(in *inst, f []*ast.Term) (*ast.Term, int) {
	fn := in.fn
	if fn.memo {
		if e := m.memo[fn.id]; e.done {
			return e.v, ranToEnd
		}
	}
	frame := m.push(fn.nlocals)
	for i, p := range fn.params {
		frame[p] = val(f, in.args[i])
	}
	caller := m.fn
	m.fn = fn
	defer func() { m.fn = caller }()
	var v *ast.Term
	for _, b := range fn.blocks {
		c := m.exec(b, frame)
		if c == aborted {
			m.pop(fn.nlocals)
			return nil, aborted
		}
		if c == returned {
			v = m.ret
			m.ret = nil
			break
		}
	}
	m.pop(fn.nlocals)
	if fn.memo {
		m.memo[fn.id] = memoEntry{done: true, v: v}
	}
	return v, ranToEnd
}

func (m *machine) callBuiltin(in *inst, f []*ast.Term) (*ast.Term, int) {
	base := len(m.args)
	for _, a := range in.args {
		m.args = append(m.args, val(f, a))
	}
	ops := m.args[base:len(m.args):len(m.args)]
	m.out = nil
	err := in.bi.f(m.bctx, ops, m.onOut)
	clear(ops)
	m.args = m.args[:base]
	out := m.out
	m.out = nil
	if err != nil {
		if h, ok := err.(topdown.Halt); ok {
			m.err = h.Err
			return nil, aborted
		}
		// Undefined, as topdown treats a built-in error unless told to be strict.
		return nil, ranToEnd
	}
	return out, ranToEnd
}

func dot(src, key *ast.Term) *ast.Term {
	if src == nil || key == nil {
		return nil
	}
	switch s := src.Value.(type) {
	case ast.Object:
		return s.Get(key)
	case *ast.Array:
		n, ok := key.Value.(ast.Number)
		if !ok {
			return nil
		}
		i, ok := n.Int()
		if !ok || i < 0 || i >= s.Len() {
			return nil
		}
		return s.Elem(i)
	case ast.Set:
		if s.Contains(key) {
			return key
		}
	}
	return nil
}

func length(t *ast.Term) int {
	if t == nil {
		return 0
	}
	switch v := t.Value.(type) {
	case *ast.Array:
		return v.Len()
	case ast.Object:
		return v.Len()
	case ast.Set:
		return v.Len()
	case ast.String:
		return utf8.RuneCountInString(string(v))
	}
	return 0
}

func valueOf(t *ast.Term) ast.Value {
	if t == nil {
		return nil
	}
	return t.Value
}

func valueName(t *ast.Term) string {
	if t == nil {
		return "an undefined local"
	}
	return ast.ValueName(t.Value)
}

func isArray(v ast.Value) bool  { _, ok := v.(*ast.Array); return ok }
func isObject(v ast.Value) bool { _, ok := v.(ast.Object); return ok }
func isSet(v ast.Value) bool    { _, ok := v.(ast.Set); return ok }

// upsert returns doc with value at path, copying the objects on the path, and them
// only (doc itself is never changed: others may hold it). A missing or non-object
// step becomes an object.
func upsert(doc *ast.Term, path []*ast.Term, value *ast.Term) *ast.Term {
	if len(path) == 0 {
		return value
	}
	obj := ast.NewObject()
	if doc != nil {
		if o, ok := doc.Value.(ast.Object); ok {
			o.Foreach(func(k, v *ast.Term) { obj.Insert(k, v) })
		}
	}
	obj.Insert(path[0], upsert(obj.Get(path[0]), path[1:], value))
	return ast.NewTerm(obj)
}

// merge returns base document a merged with virtual document b (the planner's
// ObjectMergeStmt): keys of either, objects under the same key merged, and a's value
// where the two are not both objects. Neither is changed.
func merge(a, b *ast.Term) *ast.Term {
	if a == nil || b == nil {
		if a == nil {
			return b
		}
		return a
	}
	ao, aok := a.Value.(ast.Object)
	bo, bok := b.Value.(ast.Object)
	if !aok || !bok {
		return a
	}
	out := ast.NewObject()
	ao.Foreach(func(k, v *ast.Term) {
		if other := bo.Get(k); other != nil {
			v = merge(v, other)
		}
		out.Insert(k, v)
	})
	bo.Foreach(func(k, v *ast.Term) {
		if ao.Get(k) == nil {
			out.Insert(k, v)
		}
	})
	return ast.NewTerm(out)
}
