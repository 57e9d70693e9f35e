package engine

import (
	"context"
	"errors"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/pod-identity-webhook/pod-identity-webhook/irvm"
)

// Evaluator names what runs a policy's rule.
type Evaluator string

const (
	// EvaluatorIR runs the rule's plan on the IR machine (package irvm), falling back
	// to topdown for a rule whose plan it cannot run. The default.
	EvaluatorIR Evaluator = "ir"
	// EvaluatorTopdown runs every rule with OPA's interpreter, as `opa eval` does.
	EvaluatorTopdown Evaluator = "topdown"
)

// Evaluators are the valid Evaluator values.
var Evaluators = []Evaluator{EvaluatorIR, EvaluatorTopdown}

// ruleQuery is a policy's rule query, prepared for topdown and, unless the program is
// told otherwise or the plan needs what the machine does not run, planned for irvm,
// which gives the same answers in a fraction of the time.
type ruleQuery struct {
	prepared rego.PreparedEvalQuery
	plan     *irvm.Query
	// topdownReason says why plan is nil; empty when topdown was asked for.
	topdownReason string

	// derived are the ServiceAccount rules whose values a request may give (see
	// takeDerived); preparedWithDerived is the rule with them replaced by
	// input.__derived.rN for topdown, and derivedRules their ids in plan (-1: the plan
	// does not evaluate that rule).
	derived             []*serviceAccountRule
	preparedWithDerived rego.PreparedEvalQuery
	derivedRules        []int
}

func prepareRuleQuery(ctx context.Context, compiler *ast.Compiler, query string, evaluator Evaluator) (ruleQuery, error) {
	prepared, err := prepareTopdown(ctx, compiler, query)
	if err != nil {
		return ruleQuery{}, err
	}
	rq := ruleQuery{prepared: prepared}
	if evaluator == EvaluatorTopdown {
		return rq, nil
	}
	plan, err := irvm.Prepare(ctx, compiler, query)
	if err != nil {
		rq.topdownReason = err.Error()
		if !errors.Is(err, irvm.ErrUnsupported) {
			rq.topdownReason = "the planner failed: " + err.Error()
		}
		return rq, nil
	}
	rq.plan = plan
	return rq, nil
}

// takeDerived prepares the rule to take the values of the ServiceAccount rules derived
// (computed once per ServiceAccount version, see sarules.go) instead of evaluating them:
// topdown through a query that replaces each with `with`, the plan by overriding them.
func (q *ruleQuery) takeDerived(ctx context.Context, compiler *ast.Compiler, rule string, derived []*serviceAccountRule) error {
	prepared, err := prepareTopdown(ctx, compiler, withDerived(rule, derived))
	if err != nil {
		return err
	}
	q.derived, q.preparedWithDerived = derived, prepared
	if q.plan != nil {
		q.derivedRules = make([]int, len(derived))
		for i, d := range derived {
			id, ok := q.plan.Rule(d.ref)
			if !ok {
				id = -1
			}
			q.derivedRules[i] = id
		}
	}
	return nil
}

// eval returns the rule's value as Go values (numbers normalised by regoToGo), and
// false when the rule is undefined. derived are the values of q.derived, nil when the
// rule must compute them. machineFailure is set when the IR machine failed (a bug of
// the machine): the value is then topdown's.
func (q *ruleQuery) eval(ctx context.Context, input ast.Value, derived []*ast.Term, in *requestInput) (value any, defined bool, machineFailure, err error) {
	if q.plan != nil {
		value, defined, err = q.evalPlan(ctx, input, derived)
		if !errors.Is(err, irvm.ErrInternal) {
			return value, defined, nil, err
		}
		machineFailure = err
	}
	value, defined, err = q.evalTopdown(ctx, input, derived, in)
	return value, defined, machineFailure, err
}

func (q *ruleQuery) evalPlan(ctx context.Context, input ast.Value, derived []*ast.Term) (any, bool, error) {
	var buf [8]irvm.Override
	overrides := buf[:0]
	for i, v := range derived {
		if id := q.derivedRules[i]; id >= 0 {
			overrides = append(overrides, irvm.Override{Rule: id, Value: v})
		}
	}
	v, ok, err := q.plan.Eval(ctx, input, overrides...)
	if err != nil || !ok {
		return nil, false, err
	}
	g, err := regoToGo(v)
	return g, err == nil, err
}

func (q *ruleQuery) evalTopdown(ctx context.Context, input ast.Value, derived []*ast.Term, in *requestInput) (any, bool, error) {
	prepared := q.prepared
	if derived != nil {
		values := ast.NewObject()
		for i, v := range derived {
			values.Insert(q.derived[i].inputKey, v)
		}
		input.(ast.Object).Insert(inputKeys.derived, ast.NewTerm(values))
		prepared = q.preparedWithDerived
	}
	rs, err := prepared.Eval(ctx, rego.EvalParsedInput(input), in.evalCancel(ctx))
	if err != nil {
		return nil, false, err
	}
	if len(rs) > 0 && len(rs[0].Expressions) > 0 {
		return rs[0].Expressions[0].Value, true, nil
	}
	return nil, false, nil
}
