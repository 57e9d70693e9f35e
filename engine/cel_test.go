package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// Conditions that loop are metered at run time; the others are not (see compile).
func TestCELMetering(t *testing.T) {
	c, err := newCELCompiler(DefaultCELCostLimit)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr    string
		metered bool
	}{
		{"identities.containerCredentials != null", false},
		{"has(serviceAccount.metadata.annotations) && 'a' in serviceAccount.metadata.annotations", false},
		{"object.spec.containers.exists(c, c.name == 'app')", true},
		{"object.spec.containers.map(c, c.name).size() > 1", true},
		{"[1, 2].all(x, x > 0) || params.x == 'y'", true},
	}
	for _, tt := range tests {
		cc, err := c.compile(MatchCondition{Name: "c", Expression: tt.expr})
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		if cc.metered != tt.metered {
			t.Errorf("%s: metered = %v, want %v", tt.expr, cc.metered, tt.metered)
		}
	}
}

// A looping condition that passes the load-time estimate (lists assumed up to 256
// entries) but meets a list twelve times longer is stopped at run time by the cost
// limit.
func TestCELRuntimeCostLimit(t *testing.T) {
	c, err := newCELCompiler(DefaultCELCostLimit)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.compile(MatchCondition{Name: "pairs",
		Expression: "object.spec.containers.all(c, !c.name.contains('zz'))"})
	if err != nil {
		t.Fatalf("refused at load: %v", err)
	}
	run := func(n int) error {
		containers := make([]any, n)
		for i := range containers {
			containers[i] = map[string]any{"name": fmt.Sprintf("c%d-%s", i, strings.Repeat("x", 4000))}
		}
		in := &requestInput{doc: map[string]any{"spec": map[string]any{"containers": containers}}}
		in.fixed = fixedInputs{req: &Request{}}
		_, err := cc.eval(context.Background(), &celActivation{in: in})
		return err
	}
	if err := run(10); err != nil {
		t.Fatalf("10 containers: %v", err)
	}
	err = run(3000)
	if err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Fatalf("3000 containers: err = %v, want the cost limit exceeded", err)
	}
}
