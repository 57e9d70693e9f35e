package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"k8s.io/utils/lru"

	"github.com/pod-identity-webhook/pod-identity-webhook/builtins"
)

// DefaultEvalTimeout is the per-request deadline for evaluating a whole bundle set. It
// sits well inside the webhook's timeoutSeconds, so a slow policy is cut and reported
// by us rather than by the API server's timeout.
const DefaultEvalTimeout = time.Second

// Options configure a compilation.
type Options struct {
	// Params are the configuration params (one per mutation flag). Each policy sees
	// them overlaid by its bundle's params, overlaid by its own params.
	Params map[string]any
	// EvalTimeout is the per-request deadline; zero means DefaultEvalTimeout.
	EvalTimeout time.Duration
	// CELCostLimit is the per-expression CEL cost limit; zero means DefaultCELCostLimit.
	CELCostLimit uint64
	// MemoSize is how many results to remember per program; zero means
	// DefaultMemoSize, negative disables memoisation.
	MemoSize int
	// NameSetCacheSize is how many name sets of container env and volumeMount lists
	// to remember (see nameSetCache); zero means DefaultNameSetCacheSize, negative
	// none.
	NameSetCacheSize int
	// Evaluator runs the policies' rules; empty means EvaluatorIR.
	Evaluator Evaluator
}

// Program is a compiled set of bundles: one generation of policy, ready to evaluate
// many requests concurrently. Nothing is compiled or prepared per request.
type Program struct {
	bundles  []*Bundle
	policies []*compiledPolicy
	opts     Options
	// proj is what of the pod is decoded; regoProj what of it goes into the Rego
	// input (see projectionsFor).
	proj, regoProj *projection
	// requestFields are the fields of input.request the rules can read; nil: any.
	requestFields []string
	// nameSets caches input.index's name sets (see nameSetCache).
	nameSets *nameSetCache
	// memo remembers results per pod template; nil when disabled or unsound.
	memo *memo
	// derived caches the values of ServiceAccount rules; nil when there are none.
	derived *derivedCache
	// conditions caches the results of per-ServiceAccount match conditions; nil when
	// there are none.
	conditions *conditionCache
}

type compiledPolicy struct {
	bundle     *Bundle
	Policy     Policy
	conditions []*compiledCondition
	// conditionsUseObject says some condition reads the pod, which must then be
	// decoded before matching; otherwise only a match needs it.
	conditionsUseObject bool
	rule                ruleQuery
	notes               *rego.PreparedEvalQuery
	// derived are the bundle's ServiceAccount rules this policy gets as values (see
	// sarules.go and ruleQuery.takeDerived).
	derived     []*serviceAccountRule
	params      map[string]any
	paramsValue ast.Value
	guard       *guard
}

func (cp *compiledPolicy) onError() OnError {
	if cp.Policy.OnError == "" {
		return OnErrorSkip
	}
	return cp.Policy.OnError
}

// Bundles returns the bundles the program was compiled from, in order.
func (p *Program) Bundles() []*Bundle { return p.bundles }

// Compile checks and compiles bundles, in order, into a Program. Every error names the
// bundle, file, field or line, and the reason.
func Compile(ctx context.Context, bundles []*Bundle, opts Options) (*Program, error) {
	builtins.RegisterRego()
	if opts.EvalTimeout <= 0 {
		opts.EvalTimeout = DefaultEvalTimeout
	}
	if opts.CELCostLimit == 0 {
		opts.CELCostLimit = DefaultCELCostLimit
	}
	if opts.Evaluator == "" {
		opts.Evaluator = EvaluatorIR
	}
	if !slices.Contains(Evaluators, opts.Evaluator) {
		return nil, fmt.Errorf("unknown Rego evaluator %q (want one of %v)", opts.Evaluator, Evaluators)
	}
	if len(bundles) == 0 {
		return nil, errors.New("no policy bundles to compile")
	}
	names := map[string]string{}
	for _, b := range bundles {
		if prev, dup := names[b.Name()]; dup {
			return nil, &LoadError{Source: b.Source, File: ManifestFile, Field: "name",
				Reason: fmt.Sprintf("bundle name %q is already used by %s", b.Name(), prev)}
		}
		names[b.Name()] = b.Source
		if err := checkSandbox(b, b.Modules); err != nil {
			return nil, err
		}
		if err := checkSandbox(b, b.Tests); err != nil {
			return nil, err
		}
	}
	compiler, err := compileModules(bundles, false)
	if err != nil {
		return nil, err
	}
	cel, err := newCELCompiler(opts.CELCostLimit)
	if err != nil {
		return nil, err
	}
	if opts.NameSetCacheSize == 0 {
		opts.NameSetCacheSize = DefaultNameSetCacheSize
	}
	prog := &Program{bundles: bundles, opts: opts}
	if opts.NameSetCacheSize > 0 {
		prog.nameSets = newNameSetCache(opts.NameSetCacheSize)
	}
	nDerived := 0
	for _, b := range bundles {
		g := newGuard(b.Manifest.Grants)
		derived, err := compileServiceAccountRules(ctx, compiler, b, opts.Params, nDerived)
		if err != nil {
			return nil, err
		}
		nDerived += len(derived)
		for i, pol := range b.Manifest.Policies {
			cp, err := compilePolicy(ctx, compiler, cel, b, i, pol, opts, g)
			if err != nil {
				return nil, err
			}
			if len(derived) > 0 && len(pol.Params) == 0 {
				cp.derived = derived
				if err := cp.rule.takeDerived(ctx, compiler, pol.Rule, derived); err != nil {
					return nil, &LoadError{Source: b.Source, File: ManifestFile, Field: fmt.Sprintf("policies[%d].rule", i), Reason: err.Error()}
				}
			}
			prog.policies = append(prog.policies, cp)
		}
	}
	if nDerived > 0 {
		prog.derived = &derivedCache{cache: lru.New(DefaultServiceAccountRuleCacheSize)}
	}
	nConditions := 0
	for _, cp := range prog.policies {
		for _, cc := range cp.conditions {
			cc.id = nConditions
			nConditions++
			if cc.perServiceAccount && prog.conditions == nil {
				prog.conditions = &conditionCache{cache: lru.New(DefaultServiceAccountRuleCacheSize)}
			}
		}
	}
	prog.proj, prog.regoProj, prog.requestFields = projectionsFor(compiler, bundles, prog.policies)
	if opts.MemoSize == 0 {
		opts.MemoSize = DefaultMemoSize
	}
	if !readsRequestUID(bundles, prog.policies) {
		prog.memo = newMemo(opts.MemoSize)
	}
	return prog, nil
}

func compilePolicy(ctx context.Context, compiler *ast.Compiler, cel *celCompiler, b *Bundle, i int, pol Policy,
	opts Options, g *guard) (*compiledPolicy, error) {
	config := opts.Params
	field := fmt.Sprintf("policies[%d]", i)
	fail := func(f, format string, args ...any) error {
		return &LoadError{Source: b.Source, File: ManifestFile, Field: field + f,
			Reason: fmt.Sprintf("policy %s: ", pol.Name) + fmt.Sprintf(format, args...)}
	}
	cp := &compiledPolicy{bundle: b, Policy: pol, guard: g}
	for j, mc := range pol.Match {
		cc, err := cel.compile(mc)
		if err != nil {
			return nil, fail(fmt.Sprintf(".match[%d].expression", j), "condition %s: %v", mc.Name, err)
		}
		cp.conditions = append(cp.conditions, cc)
		cp.conditionsUseObject = cp.conditionsUseObject || cc.usesObject
	}
	if err := ruleExists(compiler, pol.Rule); err != nil {
		return nil, fail(".rule", "%v", err)
	}
	rule, err := prepareRuleQuery(ctx, compiler, pol.Rule, opts.Evaluator)
	if err != nil {
		return nil, fail(".rule", "%v", err)
	}
	cp.rule = rule
	if pol.Notes != "" {
		notes, err := prepareRule(ctx, compiler, pol.Notes)
		if err != nil {
			return nil, fail(".notes", "%v", err)
		}
		cp.notes = &notes
	}
	cp.params = mergeParams(mergeParams(config, b.Manifest.Params), pol.Params)
	cp.params = normalizeNumbers(cp.params).(map[string]any)
	cp.paramsValue = mustValue(cp.params)
	for _, cc := range cp.conditions {
		cc.params = referencedParams(cc.Expression, cp.params)
	}
	return cp, nil
}

// ruleExists checks that the bundles define the rule a policy names.
func ruleExists(compiler *ast.Compiler, ref string) error {
	parsed := ast.MustParseRef(ref) // validated at load
	if len(compiler.GetRulesForVirtualDocument(parsed)) == 0 && len(compiler.GetRulesWithPrefix(parsed)) == 0 {
		return fmt.Errorf("no Rego rule %s in the bundles (check the package and rule name)", ref)
	}
	return nil
}

// prepareRule prepares a rule the bundles must define for topdown (a policy's notes
// rule; the policy's rule itself is a ruleQuery).
func prepareRule(ctx context.Context, compiler *ast.Compiler, ref string) (rego.PreparedEvalQuery, error) {
	if err := ruleExists(compiler, ref); err != nil {
		return rego.PreparedEvalQuery{}, err
	}
	return prepareTopdown(ctx, compiler, ref)
}

// prepareTopdown prepares query for topdown, its value turned into Go values by
// regoResult.
func prepareTopdown(ctx context.Context, compiler *ast.Compiler, query string) (rego.PreparedEvalQuery, error) {
	return rego.New(rego.Query(query), rego.Compiler(compiler), rego.GenerateJSON(regoResult)).PrepareForEval(ctx)
}

// compileModules compiles the bundles' modules (and their tests when withTests) in one
// compiler, so that bundles can build on each other's rules.
func compileModules(bundles []*Bundle, withTests bool) (*ast.Compiler, error) {
	builtins.RegisterRego()
	modules := map[string]*ast.Module{}
	owner := map[string]struct {
		b    *Bundle
		file string
	}{}
	add := func(b *Bundle, m Module) {
		key := moduleKey(b.Name(), m.File)
		modules[key] = m.Parsed
		owner[key] = struct {
			b    *Bundle
			file string
		}{b, m.File}
	}
	for _, b := range bundles {
		for _, m := range b.Modules {
			add(b, m)
		}
		if withTests {
			for _, m := range b.Tests {
				add(b, m)
			}
		}
	}
	compiler := ast.NewCompiler().
		WithCapabilities(sandboxCapabilities()).
		WithEnablePrintStatements(withTests)
	compiler.Compile(modules)
	if !compiler.Failed() {
		return compiler, nil
	}
	first := compiler.Errors[0]
	le := &LoadError{Source: "policy bundles", Reason: first.Message}
	if loc := first.Location; loc != nil {
		if o, ok := owner[loc.File]; ok {
			le.Source, le.File, le.Line = o.b.Source, o.file, loc.Row
		}
	}
	if strings.Contains(first.Message, "undefined function") {
		le.Reason += " (not a known built-in, or a sandboxed one: see docs/policies.md, Sandbox)"
	}
	if n := len(compiler.Errors) - 1; n > 0 {
		le.Reason += fmt.Sprintf(" (and %d more errors)", n)
	}
	return nil, le
}

// mergeParams overlays over onto base, recursively for objects, without changing either.
func mergeParams(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = deepCopy(v)
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeParams(bm, om)
				continue
			}
		}
		out[k] = deepCopy(v)
	}
	return out
}
