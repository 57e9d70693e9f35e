package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/pod-identity-webhook/pod-identity-webhook/builtins"
)

// TestReport summarises a run of the bundles' Rego unit tests.
type TestReport struct {
	Passed  int
	Skipped int
	Failed  []string // "<package>.<test> (<file>:<line>): <reason>"
}

// OK reports whether every test passed.
func (r TestReport) OK() bool { return len(r.Failed) == 0 }

func (r TestReport) String() string {
	s := fmt.Sprintf("%d passed, %d failed, %d skipped", r.Passed, len(r.Failed), r.Skipped)
	if len(r.Failed) > 0 {
		s += ": " + strings.Join(r.Failed, "; ")
	}
	return s
}

// RunTests compiles the bundles with their *_test.rego modules, in the same sandbox as
// at admission, and runs every test. A new bundle generation is activated only when
// this passes. The error is for bundles that do not compile; failing tests are in the
// report.
func RunTests(ctx context.Context, bundles []*Bundle) (TestReport, error) {
	builtins.RegisterRego()
	var report TestReport
	for _, b := range bundles {
		if err := checkSandbox(b, b.Tests); err != nil {
			return report, err
		}
	}
	compiler, err := compileModules(bundles, true)
	if err != nil {
		return report, err
	}
	modules := map[string]*ast.Module{}
	for _, b := range bundles {
		for _, m := range append(append([]Module{}, b.Modules...), b.Tests...) {
			modules[moduleKey(b.Name(), m.File)] = m.Parsed
		}
	}
	ch, err := tester.NewRunner().
		SetCompiler(compiler).
		SetModules(modules).
		CapturePrintOutput(false).
		SetParallel(1).
		RunTests(ctx, nil)
	if err != nil {
		return report, fmt.Errorf("running the bundles' tests: %w", err)
	}
	for r := range ch {
		switch {
		case r.Skip:
			report.Skipped++
		case r.Fail || r.Error != nil:
			where := ""
			if r.Location != nil {
				where = fmt.Sprintf(" (%s:%d)", r.Location.File, r.Location.Row)
			}
			reason := "failed"
			if r.Error != nil {
				reason = r.Error.Error()
			}
			report.Failed = append(report.Failed, fmt.Sprintf("%s.%s%s: %s", strings.TrimPrefix(r.Package, "data."), r.Name, where, reason))
		default:
			report.Passed++
		}
	}
	sort.Strings(report.Failed)
	return report, nil
}
