// Package upstreamfixture reads the upstream webhook's golden pod fixtures
// (test/conformance/testdata/upstream) as the conformance and benchmark tests use
// them: the testing annotations mapped to ServiceAccount annotations and handler
// settings, as testdata/upstream/README describes.
package upstreamfixture

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// Prefix starts every testing annotation of a fixture.
const Prefix = "testing.eks.amazonaws.com/"

// serviceAccountKeys maps the fixtures' serviceAccount/<key> annotations to the
// ServiceAccount annotation (under eks.amazonaws.com/) they stand for.
var serviceAccountKeys = map[string]string{
	"roleArn": "role-arn", "audience": "audience",
	"sts-regional-endpoints": "sts-regional-endpoints", "token-expiration": "token-expiration",
}

// Fixture is one fixture, ready to run.
type Fixture struct {
	Name string
	// Pod is the fixture's pod, in namespace "default" with ServiceAccount "default".
	Pod map[string]any
	// Skip says the fixture is marked skip.
	Skip bool
	// ServiceAccountAnnotations are the annotations of ServiceAccount default/default.
	ServiceAccountAnnotations map[string]string
	// Handler holds the handler/<key> settings by key (injectSTS, expiration, region,
	// mountPath), as written.
	Handler map[string]string
	// ExpectedPatch is upstream's patch for the pod ("" when it is left unchanged).
	ExpectedPatch string
}

// Load reads every fixture under dir; there must be at least one.
func Load(dir string) ([]*Fixture, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.pod.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no upstream fixtures under %s", dir)
	}
	var out []*Fixture
	for _, f := range files {
		fx, err := read(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, fx)
	}
	return out, nil
}

func read(path string) (*Fixture, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pod map[string]any
	if err := yaml.Unmarshal(raw, &pod); err != nil {
		return nil, err
	}
	meta, ok := pod["metadata"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("no metadata")
	}
	spec, ok := pod["spec"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("no spec")
	}
	annotations, _ := meta["annotations"].(map[string]any)
	fx := &Fixture{
		Name: strings.TrimSuffix(filepath.Base(path), ".pod.yaml"), Pod: pod,
		ServiceAccountAnnotations: map[string]string{}, Handler: map[string]string{},
	}
	for k, v := range annotations {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("annotation %s is not a string", k)
		}
		key, testing := strings.CutPrefix(k, Prefix)
		switch {
		case !testing:
		case key == "skip":
			fx.Skip = s == "true"
		case key == "expectedPatch":
			fx.ExpectedPatch = s
		case strings.HasPrefix(key, "handler/"):
			fx.Handler[strings.TrimPrefix(key, "handler/")] = s
		case strings.HasPrefix(key, "serviceAccount/"):
			if name, known := serviceAccountKeys[strings.TrimPrefix(key, "serviceAccount/")]; known {
				fx.ServiceAccountAnnotations["eks.amazonaws.com/"+name] = s
			}
		}
	}
	meta["namespace"] = "default"
	spec["serviceAccountName"] = "default"
	return fx, nil
}
