package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/library"
)

// Variable names shared by CEL (as variables) and Rego (as input fields).
const (
	varObject          = "object"
	varOldObject       = "oldObject"
	varRequest         = "request"
	varServiceAccount  = "serviceAccount"
	varNamespaceObject = "namespaceObject"
	varParams          = "params"
	varIdentities      = "identities"
)

var inputVariables = []string{varObject, varOldObject, varRequest, varServiceAccount, varNamespaceObject, varParams, varIdentities}

// DefaultCELCostLimit is the per-expression cost limit, the one Kubernetes uses for
// admission policy expressions (roughly 0.1 s of work).
const DefaultCELCostLimit = 1_000_000

// Size bounds assumed when estimating an expression's worst-case cost at load time:
// policy inputs are untyped JSON, so CEL cannot know how long a list or string can be.
const (
	estimatedMaxCollection = 256
	estimatedMaxString     = 4096
)

// celCompiler compiles match conditions against the Kubernetes CEL environment (the
// libraries ValidatingAdmissionPolicy has) extended with the policy input variables.
type celCompiler struct {
	env       *cel.Env
	costLimit uint64
}

func newCELCompiler(costLimit uint64) (*celCompiler, error) {
	opts := make([]cel.EnvOption, 0, len(inputVariables))
	for _, v := range inputVariables {
		opts = append(opts, cel.Variable(v, cel.DynType))
	}
	base := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	set, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: environment.DefaultCompatibilityVersion(),
		EnvOptions:        opts,
	})
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	env, err := set.Env(environment.StoredExpressions)
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	return &celCompiler{env: env, costLimit: costLimit}, nil
}

// compiledCondition is a match condition ready to evaluate.
type compiledCondition struct {
	MatchCondition
	program cel.Program
	// usesObject says the expression reads `object`; objectPaths are the parts it reads.
	usesObject   bool
	objectPaths  [][]string
	requestPaths [][]string
	// metered says the program counts its cost and checks the context (see compile).
	metered bool
	// id numbers the conditions of a program; perServiceAccount says the expression
	// reads only what is known per ServiceAccount (serviceAccount, identities, params,
	// namespaceObject, request.namespace), so its result is cached per ServiceAccount
	// version (see conditionCache).
	id                int
	perServiceAccount bool
	// params are the values of the params the expression names, as JSON, for the
	// trace of a deciding condition; shared by every trace, so read-only.
	params map[string]string
}

// compile type-checks expr, refuses it when its estimated worst-case cost exceeds the
// limit, and builds its program. The error text is the reason only; the caller adds
// which bundle, policy and condition it is.
func (c *celCompiler) compile(mc MatchCondition) (*compiledCondition, error) {
	ast, iss := c.env.Compile(mc.Expression)
	if iss.Err() != nil {
		return nil, fmt.Errorf("invalid CEL: %s", oneLine(iss.Err().Error()))
	}
	if t := ast.OutputType(); t != cel.BoolType && t != cel.DynType {
		return nil, fmt.Errorf("must evaluate to a bool, but its type is %s", t)
	}
	est, err := c.env.EstimateCost(ast, &library.CostEstimator{SizeEstimator: boundedSizes{}})
	if err != nil {
		return nil, fmt.Errorf("cannot estimate its cost: %v", err)
	}
	if est.Max > c.costLimit {
		return nil, fmt.Errorf("its worst-case cost %d exceeds the limit %d (lists and maps assumed up to %d entries, strings up to %d characters); simplify it or move the work to Rego",
			est.Max, c.costLimit, estimatedMaxCollection, estimatedMaxString)
	}
	native := ast.NativeRep()
	// Only an expression that loops (a comprehension: all, exists, map, filter, ...)
	// can do work out of proportion to the values it reads; such an expression gets
	// this engine's cost limit and is interrupted by the per-request deadline. (The
	// Kubernetes environment's own program options track every program's cost against
	// its per-call limit; the others keep that.) Conditions that read only
	// per-ServiceAccount inputs are not evaluated per pod at all (conditionCache).
	metered := hasComprehension(native)
	var opts []cel.ProgramOption
	if metered {
		opts = append(opts, cel.CostLimit(c.costLimit), cel.InterruptCheckFrequency(100))
	}
	prg, err := c.env.Program(ast, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot build its program: %v", err)
	}
	cc := &compiledCondition{MatchCondition: mc, program: prg, metered: metered,
		usesObject: celReferences(native, varObject), objectPaths: celPaths(native, varObject),
		requestPaths: celPaths(native, varRequest)}
	cc.perServiceAccount = !cc.usesObject && !celReferences(native, varOldObject) && readsOnlyNamespace(cc.requestPaths)
	return cc, nil
}

// readsOnlyNamespace says every path read of the request is request.namespace.
func readsOnlyNamespace(requestPaths [][]string) bool {
	for _, p := range requestPaths {
		if len(p) != 1 || p[0] != "namespace" {
			return false
		}
	}
	return true
}

// eval runs the condition. A non-bool result is an error, as in Kubernetes.
func (cc *compiledCondition) eval(ctx context.Context, vars interpreter.Activation) (bool, error) {
	var out ref.Val
	var err error
	if cc.metered {
		out, _, err = cc.program.ContextEval(ctx, vars)
	} else {
		out, _, err = cc.program.Eval(vars)
	}
	if err != nil {
		return false, fmt.Errorf("%s", oneLine(err.Error()))
	}
	return boolResult(out)
}

func boolResult(v ref.Val) (bool, error) {
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("evaluated to %v (%s), not a bool", v, v.Type().TypeName())
	}
	return bool(b), nil
}

// boundedSizes gives CEL's cost estimator an upper bound for values whose size the
// type checker cannot know (everything, since the inputs are dynamic JSON).
type boundedSizes struct{}

func (boundedSizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if t := n.Type(); t != nil && (t.Kind() == types.StringKind || t.Kind() == types.BytesKind) {
		return &checker.SizeEstimate{Min: 0, Max: estimatedMaxString}
	}
	return &checker.SizeEstimate{Min: 0, Max: estimatedMaxCollection}
}

func (boundedSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\n", " ")
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return s
}

// hasComprehension reports whether a CEL expression contains a comprehension (the
// macros all, exists, exists_one, map and filter, and any other loop).
func hasComprehension(a *celast.AST) bool {
	return len(celast.MatchDescendants(celast.NavigateAST(a), celast.KindMatcher(celast.ComprehensionKind))) > 0
}
