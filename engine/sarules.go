package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"k8s.io/utils/lru"
)

// ServiceAccount rules are Rego rules a bundle declares (manifest serviceAccountRules)
// as depending only on what is known per ServiceAccount: input.serviceAccount,
// input.identities, input.params, input.namespaceObject and input.request.namespace.
// The engine checks that at load time, evaluates each such rule once per ServiceAccount
// version and gives the value to the bundle's policies with Rego's `with` keyword, so
// that the work a ServiceAccount's annotations, the ConfigMap and the flags decide is
// not redone for every pod.
//
// The value is used only by policies of the declaring bundle that have no params of
// their own (others see other params); when it is undefined the policy is evaluated
// as written, since Rego's `with` cannot say "undefined".

// DefaultServiceAccountRuleCacheSize bounds the cached values: one per active
// ServiceAccount version and declared rule.
const DefaultServiceAccountRuleCacheSize = 8192

// derivedInputKey is where the values are passed in the policy input.
const derivedInputKey = "__derived"

// allowedServiceAccountInputs are the input fields a ServiceAccount rule may read.
var allowedServiceAccountInputs = map[string]bool{
	varServiceAccount: true, varIdentities: true, varParams: true, varNamespaceObject: true,
}

type serviceAccountRule struct {
	id       int       // index among the program's ServiceAccount rules
	inputKey *ast.Term // "r<id>", its key in input.__derived
	ref      string    // data.pod_identity.identity.settings
	query    rego.PreparedEvalQuery
	params   ast.Value // the declaring bundle's params over the configuration
	// paramsOnly: the rule reads nothing but input.params (an annotation key made of
	// the prefix flag), so one value serves every ServiceAccount.
	paramsOnly bool
}

// checkServiceAccountRule verifies that a declared rule, and every rule it depends on,
// reads only the per-ServiceAccount inputs. It returns the first offending reference
// with its location, and whether input.params is all they read.
func checkServiceAccountRule(c *ast.Compiler, ref ast.Ref) (loc *ast.Location, reason string, paramsOnly bool) {
	seen := map[*ast.Rule]bool{}
	queue := c.GetRules(ref)
	if len(queue) == 0 {
		return nil, "no such rule", false
	}
	paramsOnly = true
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if seen[r] {
			continue
		}
		seen[r] = true
		ast.WalkRefs(r, func(x ast.Ref) bool {
			if loc != nil || len(x) == 0 || !x[0].Equal(ast.InputRootDocument) {
				return loc != nil
			}
			paramsOnly = paramsOnly && readsParams(x)
			if bad := badServiceAccountInput(x); bad != "" {
				loc, reason = x[0].Location, fmt.Sprintf("rule %s reads %s", r.Head.Ref(), bad)
				if loc == nil {
					loc = r.Location
				}
				return true
			}
			return false
		})
		if loc != nil {
			return loc, reason, false
		}
		for dep := range c.Graph.Dependencies(r) {
			if dr, ok := dep.(*ast.Rule); ok {
				queue = append(queue, dr)
			}
		}
	}
	return nil, "", paramsOnly
}

// readsParams reports whether a ref under input reads input.params.
func readsParams(x ast.Ref) bool {
	if len(x) < 2 {
		return false
	}
	key, ok := x[1].Value.(ast.String)
	return ok && string(key) == varParams
}

// badServiceAccountInput describes what a ref under input reads if a ServiceAccount
// rule may not read it, else returns "".
func badServiceAccountInput(x ast.Ref) string {
	if len(x) == 1 {
		return "the whole input"
	}
	key, ok := x[1].Value.(ast.String)
	if !ok {
		return "input[" + x[1].String() + "]"
	}
	if allowedServiceAccountInputs[string(key)] {
		return ""
	}
	if string(key) == varRequest && len(x) > 2 {
		if f, ok := x[2].Value.(ast.String); ok && string(f) == "namespace" {
			return ""
		}
	}
	return x.String()
}

// compileServiceAccountRules prepares a bundle's declared rules.
func compileServiceAccountRules(ctx context.Context, c *ast.Compiler, b *Bundle, config map[string]any, firstID int) ([]*serviceAccountRule, error) {
	var out []*serviceAccountRule
	params := mustValue(normalizeNumbers(mergeParams(config, b.Manifest.Params)))
	for i, ref := range b.Manifest.ServiceAccountRules {
		field := fmt.Sprintf("serviceAccountRules[%d]", i)
		parsed := ast.MustParseRef(ref) // validated at load
		loc, reason, paramsOnly := checkServiceAccountRule(c, parsed)
		if reason == "no such rule" {
			return nil, &LoadError{Source: b.Source, File: ManifestFile, Field: field,
				Reason: fmt.Sprintf("no Rego rule %s in the bundles", ref)}
		}
		if reason != "" {
			le := &LoadError{Source: b.Source, File: ManifestFile, Field: field,
				Reason: fmt.Sprintf("%s may only read input.serviceAccount, input.identities, input.params, input.namespaceObject and input.request.namespace, but %s", ref, reason)}
			if loc != nil {
				le.Reason += fmt.Sprintf(" (%s:%d)", strings.TrimPrefix(loc.File, b.Name()+"/"), loc.Row)
			}
			return nil, le
		}
		// The value is kept as a Rego term: a JSON round trip would turn sets into
		// arrays, and the policies use set operations on it.
		q, err := rego.New(rego.Query(ref), rego.Compiler(c),
			rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
		).PrepareForEval(ctx)
		if err != nil {
			return nil, &LoadError{Source: b.Source, File: ManifestFile, Field: field, Reason: err.Error()}
		}
		out = append(out, &serviceAccountRule{id: firstID + i, inputKey: ast.StringTerm(fmt.Sprintf("r%d", firstID+i)),
			ref: ref, query: q, params: params, paramsOnly: paramsOnly})
	}
	return out, nil
}

// withDerived returns a policy's rule query with each ServiceAccount rule replaced by
// the value passed in input.__derived.rN.
func withDerived(rule string, derived []*serviceAccountRule) string {
	var q strings.Builder
	q.WriteString(rule)
	for _, d := range derived {
		fmt.Fprintf(&q, " with %s as input.%s.r%d", d.ref, derivedInputKey, d.id)
	}
	return q.String()
}

// derivedCache holds ServiceAccount rule values; a nil value means undefined.
type derivedCache struct{ cache *lru.Cache }

// derivedValue is a rule's value as the term both evaluators take (no wrapping per
// request); nil: undefined.
type derivedValue struct{ v *ast.Term }

// derivedKey identifies a rule's value: the rule and the request's ServiceAccount key
// (see requestInput.serviceAccountKey), which a params-only rule leaves zero (the
// params are fixed for a program, and so is its cache).
type derivedKey struct {
	rule int
	sa   memoKey
}

// value returns the rule's value for the request's ServiceAccount, evaluating it on a
// cache miss. ok is false when the rule is undefined or failed (the policy is then
// evaluated as written, which reports any error itself).
func (dc *derivedCache) value(ctx context.Context, r *serviceAccountRule, in *requestInput) (*ast.Term, bool) {
	k := derivedKey{rule: r.id}
	if !r.paramsOnly {
		k.sa = in.serviceAccountKey()
	}
	if got, hit := dc.cache.Get(k); hit {
		dv := got.(derivedValue)
		return dv.v, dv.v != nil
	}
	input := ast.NewObject(
		ast.Item(ast.StringTerm(varServiceAccount), ast.NewTerm(in.fixed.value(fixedServiceAccount))),
		ast.Item(ast.StringTerm(varIdentities), ast.NewTerm(in.fixed.value(fixedIdentities))),
		ast.Item(ast.StringTerm(varNamespaceObject), ast.NewTerm(in.fixed.value(fixedNamespaceObject))),
		ast.Item(ast.StringTerm(varParams), ast.NewTerm(r.params)),
		ast.Item(ast.StringTerm(varRequest), ast.ObjectTerm(ast.Item(ast.StringTerm("namespace"), ast.StringTerm(in.req.Attributes.Namespace)))),
	)
	rs, err := r.query.Eval(ctx, rego.EvalParsedInput(input), in.evalCancel(ctx))
	if err != nil {
		return nil, false // not cached: a deadline on a busy machine is not the rule's answer
	}
	var v *ast.Term
	if len(rs) > 0 && len(rs[0].Expressions) > 0 {
		t, ok := rs[0].Expressions[0].Value.(*ast.Term)
		if !ok {
			return nil, false
		}
		v = ast.NewTerm(t.Value) // its own term: the result's may carry a location
	}
	dc.cache.Add(k, derivedValue{v: v})
	return v, v != nil
}

// conditionCache holds the results of match conditions that read only what is known
// per ServiceAccount (compiledCondition.perServiceAccount): the default bundle's
// conditions all do, so most admissions, and every pod that gets no identity, run
// no CEL at all once their ServiceAccount version was seen.
type conditionCache struct{ cache *lru.Cache }

type conditionKey struct {
	cond int // compiledCondition.id
	sa   memoKey
}

// eval returns the condition's result, from the cache when the request's ServiceAccount
// inputs were seen before. Errors are not cached (a deadline is not the condition's
// answer).
func (cc *conditionCache) eval(ctx context.Context, c *compiledCondition, in *requestInput, vars *celActivation) (bool, error) {
	if cc == nil || !c.perServiceAccount {
		return c.eval(ctx, vars)
	}
	k := conditionKey{cond: c.id, sa: in.serviceAccountKey()}
	if got, hit := cc.cache.Get(k); hit {
		return got.(bool), nil
	}
	ok, err := c.eval(ctx, vars)
	if err == nil {
		cc.cache.Add(k, ok)
	}
	return ok, err
}
