package policyset

import (
	"errors"
	"regexp"
	"strings"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// TestsFailedError is a generation refused because some of its bundles' Rego tests
// failed. Its text names the sources of the bundles whose tests failed and lists every
// failure with its "<bundle>/<file>:<line>".
type TestsFailedError struct {
	Report  engine.TestReport
	Sources []string // of the bundles whose tests failed, in run order
}

func (e *TestsFailedError) Error() string {
	if len(e.Sources) == 0 {
		return "bundle tests failed: " + e.Report.String()
	}
	return "bundle tests failed in " + strings.Join(e.Sources, ", ") + ": " + e.Report.String()
}

// testsFailed makes the error for a failed report of set.
func testsFailed(report engine.TestReport, set []*entry) *TestsFailedError {
	e := &TestsFailedError{Report: report}
	for _, b := range failedTestEntries(report, set) {
		e.Sources = append(e.Sources, b.source)
	}
	return e
}

// failedTestBundle picks the bundle name out of a TestReport failure,
// "<package>.<test> (<bundle>/<file>:<line>): <reason>": the engine compiles every
// module under "<bundle>/<file>".
var failedTestBundle = regexp.MustCompile(`^\S+ \(([^/()\s]+)/[^()]*:\d+\): `)

// blame returns the entries of set that err names: the bundle of a LoadError (load,
// sandbox, CEL and Rego compile errors all carry the bundle's source), or the bundles
// whose tests failed. It returns nothing when the error names no bundle of the set,
// e.g. a compiler error without a location.
func blame(err error, set []*entry) []*entry {
	var le *engine.LoadError
	if errors.As(err, &le) {
		for _, e := range set {
			if e.source == le.Source {
				return []*entry{e}
			}
		}
		return nil
	}
	var te *TestsFailedError
	if errors.As(err, &te) {
		return failedTestEntries(te.Report, set)
	}
	return nil
}

// failedTestEntries returns the entries of set whose tests failed, in run order.
func failedTestEntries(report engine.TestReport, set []*entry) []*entry {
	failed := map[string]bool{}
	for _, f := range report.Failed {
		if m := failedTestBundle.FindStringSubmatch(f); m != nil {
			failed[m[1]] = true
		}
	}
	var out []*entry
	for _, e := range set {
		if failed[e.bundle.Name()] {
			out = append(out, e)
		}
	}
	return out
}
