package policyset

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

func TestBlame(t *testing.T) {
	set := []*entry{
		testEntry(t, "default", DefaultBundleSource, "default"),
		testEntry(t, "dir:1:/b", "/b", "base"),
		testEntry(t, "configmap:x", "configmap ns/x", "site-x"),
		testEntry(t, "configmap:y", "configmap ns/y", "site-y"),
	}
	tests := []struct {
		name string
		err  error
		want []string // slots
	}{
		{"load error of a ConfigMap", &engine.LoadError{Source: "configmap ns/x", File: "a.rego", Reason: "bad"}, []string{"configmap:x"}},
		{"wrapped load error of a directory", fmt.Errorf("compiling: %w", &engine.LoadError{Source: "/b", Reason: "bad"}), []string{"dir:1:/b"}},
		{"compiler error without a location", &engine.LoadError{Source: "policy bundles", Reason: "bad"}, nil},
		{"failing tests of two bundles, in run order", &TestsFailedError{Report: engine.TestReport{Failed: []string{
			"site_y_test.test_a (site-y/lib/y_test.rego:3): failed",
			"base_test.test_b (base/base_test.rego:9): undefined (x/y:1)",
			"site_y_test.test_c (site-y/y_test.rego:4): failed",
		}}}, []string{"dir:1:/b", "configmap:y"}},
		{"failing test of an unknown bundle", &TestsFailedError{Report: engine.TestReport{Failed: []string{"p.test_a (gone/a_test.rego:3): failed"}}}, nil},
		{"anything else", errors.New("running the bundles' tests: boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range blame(tt.err, set) {
				got = append(got, e.slot)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("blame = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTestsFailedErrorNamesSources(t *testing.T) {
	set := []*entry{testEntry(t, "dir:1:/b", "/b", "base"), testEntry(t, "configmap:x", "configmap ns/x", "site-x")}
	report := engine.TestReport{Passed: 3, Failed: []string{"x_test.test_a (site-x/x_test.rego:3): failed", "b_test.test_b (base/b_test.rego:4): failed"}}
	want := "bundle tests failed in /b, configmap ns/x: 3 passed, 2 failed, 0 skipped: " +
		"x_test.test_a (site-x/x_test.rego:3): failed; b_test.test_b (base/b_test.rego:4): failed"
	if got := testsFailed(report, set).Error(); got != want {
		t.Fatalf("error = %q, want %q", got, want)
	}
}

// testEntry is an entry holding an empty bundle called name.
func testEntry(t *testing.T, slot, source, name string) *entry {
	t.Helper()
	b, err := engine.LoadMap(source, map[string]string{"manifest.yaml": "apiVersion: pod-identity-webhook.io/v1alpha1\nkind: Bundle\nname: " + name + "\n"})
	if err != nil {
		t.Fatal(err)
	}
	return newEntry(&entry{slot: slot, source: source}, b, nil)
}
