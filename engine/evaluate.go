package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// InputError means the request itself is malformed (not a pod, not JSON). It is the
// caller's input that is wrong, not a policy.
type InputError struct {
	Field  string // "object" or "oldObject"
	Reason string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Reason }

// EvalOptions tune one evaluation.
type EvalOptions struct {
	// Explain also evaluates each applied policy's notes rule, for `eval -o explain`.
	// Off on the admission path, where nobody reads them.
	Explain bool
}

// Result is the outcome of running every policy over one pod.
type Result struct {
	// Patch is the minimal additive JSON Patch that turns the received pod into Pod().
	Patch []Op
	// object is the part of the pod the policies can read (see Object).
	object map[string]any
	// Trace says, per policy, what matched, why, what changed and how long it took.
	Trace Trace
	// Denied holds the reason when a policy with onError: deny failed; the pod must
	// then be rejected.
	Denied string

	original  []byte
	patchJSON patchJSON
}

// patchJSON encodes a patch once, however many results share it (memo hits do).
type patchJSON struct {
	once *sync.Once
	b    *[]byte
	err  *error
}

func newPatchJSON() patchJSON { return patchJSON{once: &sync.Once{}, b: new([]byte), err: new(error)} }

// encodedPatchJSON is a patchJSON already holding b.
func encodedPatchJSON(b []byte) patchJSON {
	p := newPatchJSON()
	p.once.Do(func() { *p.b = b })
	return p
}

// PatchJSON returns Patch as JSON ("[]" when empty). Results from the memo share the
// bytes, so callers must not modify them.
func (r *Result) PatchJSON() ([]byte, error) {
	if r.patchJSON.once == nil {
		r.patchJSON = newPatchJSON()
	}
	r.patchJSON.once.Do(func() {
		*r.patchJSON.b, *r.patchJSON.err = marshalPatch(r.Patch)
	})
	return *r.patchJSON.b, *r.patchJSON.err
}

// Pod returns the whole pod after all policies: the received pod with Patch applied.
func (r *Result) Pod() (map[string]any, error) {
	doc, err := decodeObject(r.original)
	if err != nil {
		return nil, &InputError{Field: "object", Reason: err.Error()}
	}
	for _, op := range r.Patch {
		if err := applyOp(doc, op); err != nil {
			return nil, fmt.Errorf("applying %s %s: %w", op.Op, op.Path, err)
		}
	}
	return doc, nil
}

// Object returns the part of the pod the policies can read, after all policies; nil
// when no policy needed the pod. Pod() gives the whole pod.
func (r *Result) Object() (map[string]any, error) {
	if r.object != nil {
		if err := materializeContainers(r.object); err != nil {
			return nil, &InputError{Field: "object", Reason: err.Error()}
		}
	}
	return r.object, nil
}

// Mutated reports whether the policies changed the pod.
func (r *Result) Mutated() bool { return len(r.Patch) > 0 }

// Failed reports the policies that failed, in order.
func (r *Result) Failed() []PolicyTrace {
	var out []PolicyTrace
	for _, p := range r.Trace.Policies {
		if p.Error != "" {
			out = append(out, p)
		}
	}
	return out
}

// Evaluate runs the program's policies over the request's pod, in order. It fails only
// on malformed input (an *InputError); policy failures are recorded in the result and
// handled per the policy's onError.
//
// The pod is decoded lazily, and only in the parts the policies can read (the
// program's projection): a pod that no policy matches, with conditions that do not
// read the pod, is never decoded.
func (p *Program) Evaluate(ctx context.Context, req Request, opts EvalOptions) (*Result, error) {
	start := time.Now()
	var old any
	if len(req.OldObject) > 0 {
		o, err := decodeObject(req.OldObject)
		if err != nil {
			return nil, &InputError{Field: "oldObject", Reason: err.Error()}
		}
		old = o
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.EvalTimeout)
	defer cancel()

	in := &requestInput{
		raw:      req.Object,
		proj:     p.proj,
		regoProj: p.regoProj,
		req:      &req,
		nameSets: p.nameSets,
	}
	in.fixed = fixedInputs{req: &req, old: old, requestFields: p.requestFields}
	defer in.release()
	if !opts.Explain {
		in.memo = p.memo // explain wants notes, which the memo does not keep
	} else {
		// Notes rules may read anything of the pod and the request: decode and convert
		// all of it.
		in.proj, in.regoProj = allProjection(), allProjection()
		in.fixed.requestFields = nil
		if err := in.decode(); err != nil {
			return nil, err
		}
	}
	res := &Result{original: req.Object, Trace: Trace{Namespace: req.Attributes.Namespace, Pod: req.Attributes.Name,
		ServiceAccountFound: req.ServiceAccount != nil}}
	if req.ServiceAccount != nil {
		res.Trace.ServiceAccount = req.ServiceAccount.Name
		res.Trace.ServiceAccountAnnotations = req.ServiceAccount.Annotations
	}
	for _, cp := range p.policies {
		t0 := time.Now()
		pt, err := p.runPolicy(ctx, cp, in, opts)
		if entry, hit := isMemoHit(err); hit {
			res.Patch = entry.patch
			res.patchJSON = entry.json
			res.Trace.Policies = entry.policies
			res.Trace.Memoized = true
			res.Trace.Duration = time.Since(start)
			return res, nil
		}
		if err != nil {
			return nil, err
		}
		pt.Duration = time.Since(t0)
		res.Trace.Policies = append(res.Trace.Policies, pt)
		res.Patch = appendShared(res.Patch, pt.Ops)
		if pt.Error != "" && cp.onError() == OnErrorDeny {
			res.Denied = fmt.Sprintf("policy %s/%s failed: %s", cp.bundle.Name(), cp.Policy.Name, pt.Error)
			break
		}
	}
	if in.doc != nil {
		res.object = in.doc
		res.Trace.Pod = podName(in.doc)
		res.Trace.ServiceAccount = serviceAccountName(in.doc)
	}
	if in.memoKey != nil {
		in.memo.put(*in.memoKey, res)
	}
	res.Trace.Duration = time.Since(start)
	return res, nil
}

// requestInput holds the policy input for one request. The pod is decoded on first
// use and changes as policies apply; the rest is fixed and converted for Rego once.
type requestInput struct {
	raw      []byte
	leaves   []leaf // the projected pod as raw JSON, to rebuild doc after a failure
	applied  []Op   // the operations applied to doc so far
	proj     *projection
	regoProj *projection
	req      *Request
	memo     *memo // nil: no memoisation for this evaluation
	nameSets *nameSetCache
	memoKey  *memoKey // set once the pod was hashed
	doc      map[string]any
	// materialized says doc's containers hold no rawList any more.
	materialized bool
	fixed        fixedInputs
	docAST       ast.Value // nil when doc changed since the last conversion
	indexAST     ast.Value // input.index; nil with docAST
	saKey        *memoKey  // see serviceAccountKey
	// cancel stops the request's Rego evaluations when its context ends (see
	// evalCancel); stopCancel unregisters that.
	cancel     topdown.Cancel
	stopCancel func() bool
}

// evalCancel is the option that ends the request's Rego evaluations with ctx. Without
// it, OPA starts a goroutine per evaluation to wait on ctx (about a microsecond);
// here one callback serves the whole request. ctx is the request's (Evaluate's).
func (in *requestInput) evalCancel(ctx context.Context) rego.EvalOption {
	if in.cancel == nil {
		in.cancel = topdown.NewCancel()
		in.stopCancel = context.AfterFunc(ctx, in.cancel.Cancel)
	}
	return rego.EvalExternalCancel(in.cancel)
}

// release drops what the request registered.
func (in *requestInput) release() {
	if in.stopCancel != nil {
		in.stopCancel()
	}
}

// serviceAccountKey hashes what is known per ServiceAccount (the ServiceAccount
// version, the Namespace, the identities and the request namespace), once per request:
// the caches of ServiceAccount rules and conditions are keyed by it.
func (in *requestInput) serviceAccountKey() memoKey {
	if in.saKey == nil {
		w := newKeyWriter()
		w.str(in.req.Attributes.Namespace)
		writeServiceAccountInputs(w, in.req)
		k := w.sum()
		in.saKey = &k
	}
	return *in.saKey
}

// decode decodes the projected pod if that has not happened yet. With a memo, it
// first hashes the projected pod and the fixed inputs: if the memo knows the result,
// it returns errMemoHit, which ends the evaluation. That is sound at this point
// because everything evaluated so far (conditions that do not read the pod) depends
// only on what the key covers.
func (in *requestInput) decode() error {
	if in.doc != nil {
		return nil
	}
	var leaves []leaf
	if sc := in.req.Scan; sc.of(in.raw, in.proj) {
		leaves = sc.leaves
	} else {
		var err error
		if leaves, err = splitProjected(in.raw, in.proj); err != nil {
			return &InputError{Field: "object", Reason: err.Error()}
		}
	}
	if in.memo != nil {
		k := keyOf(in.req, leaves)
		if entry, ok := in.memo.get(k); ok {
			return errMemoHit{entry: entry}
		}
		in.memoKey = &k
	}
	doc, err := buildDoc(leaves)
	if err != nil {
		return &InputError{Field: "object", Reason: err.Error()}
	}
	in.doc, in.leaves = doc, leaves
	return nil
}

// restore rebuilds doc as it was before a failed policy: decoded again, with the
// operations of the policies before it. Cheaper than copying the pod before every
// policy, since failures are rare.
func (in *requestInput) restore() {
	doc, err := buildDoc(in.leaves)
	if err != nil {
		panic("engine: re-decoding a pod that decoded before: " + err.Error())
	}
	for _, op := range in.applied {
		if err := applyOp(doc, op); err != nil {
			panic("engine: re-applying " + op.Path + ": " + err.Error())
		}
	}
	in.doc, in.docAST, in.indexAST, in.materialized = doc, nil, nil, false
}

// materialize decodes the raw lists of the pod's containers (see rawList), once. It
// fails only on a pod that was not valid JSON, which Program.Scan does not check.
func (in *requestInput) materialize() error {
	if in.doc == nil || in.materialized {
		return nil
	}
	if err := materializeContainers(in.doc); err != nil {
		return &InputError{Field: "object", Reason: err.Error()}
	}
	in.materialized = true
	return nil
}

func (in *requestInput) regoInput(params ast.Value) (ast.Value, error) {
	if in.docAST == nil {
		if in.regoProj.reachesContainers() {
			if err := in.materialize(); err != nil {
				return nil, err
			}
		}
		in.docAST = mustValue(in.regoProj.project(in.doc))
		in.indexAST = buildIndex(in.doc, in.nameSets)
	}
	obj := ast.NewObjectWithCapacity(4 + nFixed)
	obj.Insert(inputKeys.object, ast.NewTerm(in.docAST))
	obj.Insert(inputKeys.index, ast.NewTerm(in.indexAST))
	obj.Insert(inputKeys.params, ast.NewTerm(params))
	for i, key := range inputKeys.fixed {
		obj.Insert(key, ast.NewTerm(in.fixed.value(i)))
	}
	return obj, nil
}

// The input's keys as terms, built once (see indexKeys).
var inputKeys = func() (k struct {
	object, index, params, derived *ast.Term
	fixed                          [nFixed]*ast.Term
}) {
	k.object, k.index, k.params, k.derived = ast.StringTerm(varObject), ast.StringTerm(varIndex), ast.StringTerm(varParams), ast.StringTerm(derivedInputKey)
	for i, name := range fixedNames {
		k.fixed[i] = ast.StringTerm(name)
	}
	return k
}()

// runPolicy evaluates one policy. Its error is only an *InputError from decoding the
// pod; the policy's own failures are in the trace.
func (p *Program) runPolicy(ctx context.Context, cp *compiledPolicy, in *requestInput, opts EvalOptions) (PolicyTrace, error) {
	pt := PolicyTrace{Bundle: cp.bundle.Name(), Policy: cp.Policy.Name, OnError: cp.onError()}
	fail := func(format string, args ...any) (PolicyTrace, error) {
		pt.Error = fmt.Sprintf(format, args...)
		pt.Ops = nil
		pt.Changes = nil
		return pt, nil
	}

	if cp.conditionsUseObject {
		if err := in.decode(); err != nil {
			return pt, err
		}
		if err := in.materialize(); err != nil { // CEL reads the pod as JSON values
			return pt, err
		}
	}
	vars := &celActivation{in: in, params: cp.params}
	pt.Matched = true
	for _, c := range cp.conditions {
		ok, err := p.conditions.eval(ctx, c, in, vars)
		ct := ConditionTrace{Name: c.Name, Expression: c.Expression}
		if err != nil {
			ct.Error = err.Error()
			ct.Params = c.params
			pt.Conditions = append(pt.Conditions, ct)
			pt.Matched = false
			return fail("match condition %s: %s", c.Name, deadlineReason(ctx, err))
		}
		ct.Result = ok
		if !ok {
			ct.Params = c.params
			pt.Conditions = append(pt.Conditions, ct)
			pt.Matched = false
			return pt, nil
		}
		pt.Conditions = append(pt.Conditions, ct)
	}

	if err := in.decode(); err != nil {
		return pt, err
	}
	inputValue, err := in.regoInput(cp.paramsValue)
	if err != nil {
		return pt, err
	}
	query := &cp.rule
	derived := p.derivedValues(ctx, cp, in)
	value, defined, machineFailure, err := query.eval(ctx, inputValue, derived, in)
	if machineFailure != nil {
		pt.MachineFailure = machineFailure.Error()
		pt.Notes = append(pt.Notes, fmt.Sprintf("rule %s evaluated by topdown: %v", cp.Policy.Rule, machineFailure))
	}
	if err != nil {
		return fail("rule %s: %s", cp.Policy.Rule, deadlineReason(ctx, err))
	}
	if !defined {
		pt.Notes = append(pt.Notes, fmt.Sprintf("rule %s is undefined for this pod: no changes", cp.Policy.Rule))
	}
	if opts.Explain && query.plan == nil && query.topdownReason != "" {
		pt.Notes = append(pt.Notes, fmt.Sprintf("rule %s evaluated by topdown: %s", cp.Policy.Rule, query.topdownReason))
	}
	input := rego.EvalParsedInput(inputValue)
	if opts.Explain && cp.notes != nil {
		pt.Notes = append(pt.Notes, evalNotes(ctx, *cp.notes, input, in.evalCancel(ctx))...)
	}
	muts, err := mutationList(value)
	if err != nil {
		return fail("rule %s: %v", cp.Policy.Rule, err)
	}
	if len(muts) == 0 {
		return pt, nil
	}
	// Applied in place; a failure half-way restores the pod as it was.
	mu := &mutator{doc: in.doc, guard: cp.guard, describe: opts.Explain}
	// Each mutation's ops are joined once at the end, into a slice of their exact size
	// that the request's patch then shares (see appendShared).
	parts := make([][]Op, 0, len(muts))
	for i, m := range muts {
		a, err := mu.apply(m)
		parts = append(parts, a.ops)
		if err != nil {
			if pt.Ops = slices.Concat(parts...); len(pt.Ops) > 0 {
				in.restore()
			}
			return fail("mutation %d: %v", i, err)
		}
		if a.description != "" {
			pt.Changes = append(pt.Changes, a.description)
		}
	}
	pt.Ops = slices.Concat(parts...)
	if len(pt.Ops) > 0 {
		in.applied = appendShared(in.applied, pt.Ops)
		in.docAST, in.indexAST = nil, nil
	}
	return pt, nil
}

// appendShared is append(list, ops...) that, when list is empty (the first policy
// with changes, usually the only one), returns ops itself, capped so that a later
// append copies rather than writes into ops' array.
func appendShared(list, ops []Op) []Op {
	if len(list) == 0 {
		return ops[:len(ops):len(ops)]
	}
	return append(list, ops...)
}

// derivedValues returns the policy's ServiceAccount rule values, in cp.derived's
// order, or nil when the policy must be evaluated as written (it takes none, or a rule
// is undefined or failed for this ServiceAccount).
func (p *Program) derivedValues(ctx context.Context, cp *compiledPolicy, in *requestInput) []*ast.Term {
	if len(cp.derived) == 0 {
		return nil
	}
	values := make([]*ast.Term, 0, len(cp.derived))
	for _, r := range cp.derived {
		v, ok := p.derived.value(ctx, r, in)
		if !ok {
			return nil
		}
		values = append(values, v)
	}
	return values
}

// evalNotes evaluates a policy's notes rule; its failure is itself a note, since notes
// only explain and never change the outcome.
func evalNotes(ctx context.Context, q rego.PreparedEvalQuery, opts ...rego.EvalOption) []string {
	rs, err := q.Eval(ctx, opts...)
	if err != nil {
		return []string{"notes rule failed: " + err.Error()}
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil
	}
	list, _ := rs[0].Expressions[0].Value.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		} else {
			out = append(out, fmt.Sprint(e))
		}
	}
	return out
}

// deadlineReason rewords cancellation errors so the trace says the deadline was hit.
func deadlineReason(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "stopped by the per-request deadline (" + err.Error() + ")"
	}
	return err.Error()
}

var paramRef = regexp.MustCompile(`\bparams\.([A-Za-z_][A-Za-z0-9_]*)`)

// referencedParams returns the values of the params an expression names, as JSON. It
// runs at compile time: params are fixed for a compiled policy.
func referencedParams(expr string, params map[string]any) map[string]string {
	var out map[string]string
	for _, m := range paramRef.FindAllStringSubmatch(expr, -1) {
		v, ok := params[m[1]]
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		js, _ := json.Marshal(v)
		out[m[1]] = string(js)
	}
	return out
}

func podName(doc map[string]any) string {
	if n, _ := lookup(doc, "metadata", "name"); n != nil && n != "" {
		return fmt.Sprint(n)
	}
	if g, _ := lookup(doc, "metadata", "generateName"); g != nil && g != "" {
		return fmt.Sprint(g) + "*"
	}
	return ""
}

func serviceAccountName(doc map[string]any) string {
	if n, _ := lookup(doc, "spec", "serviceAccountName"); n != nil {
		return fmt.Sprint(n)
	}
	return ""
}
