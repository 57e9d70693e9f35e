package engine

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Trace records, per policy, whether it matched and which condition decided, what it
// changed and how long it took: what an operator reads to learn why a pod did or did
// not get its identity.
type Trace struct {
	Namespace           string `json:"namespace"`
	Pod                 string `json:"pod"` // name, or generateName followed by "*"
	ServiceAccount      string `json:"serviceAccount"`
	ServiceAccountFound bool   `json:"serviceAccountFound"`
	// ServiceAccountAnnotations are the annotations policies could read.
	ServiceAccountAnnotations map[string]string `json:"serviceAccountAnnotations,omitempty"`
	Policies                  []PolicyTrace     `json:"policies"`
	// Memoized says the result came from the memo: an earlier identical evaluation.
	// The policy traces (and durations) are that evaluation's.
	Memoized bool          `json:"memoized,omitempty"`
	Duration time.Duration `json:"durationNanoseconds"`
}

// PolicyTrace is one policy's part in a decision.
type PolicyTrace struct {
	Bundle  string  `json:"bundle"`
	Policy  string  `json:"policy"`
	Matched bool    `json:"matched"`
	OnError OnError `json:"onError"`
	// Conditions are the match conditions evaluated, in order; evaluation stops at the
	// first one that is false or fails, which is then the deciding one.
	Conditions []ConditionTrace `json:"conditions,omitempty"`
	Changes    []string         `json:"changes,omitempty"`
	Ops        []Op             `json:"ops,omitempty"`
	Notes      []string         `json:"notes,omitempty"`
	Error      string           `json:"error,omitempty"`
	// MachineFailure is set when the IR machine failed on the rule (a bug of the
	// machine, see irvm.ErrInternal); the rule was then evaluated by topdown.
	MachineFailure string        `json:"machineFailure,omitempty"`
	Duration       time.Duration `json:"durationNanoseconds"`
}

// ConditionTrace is one evaluated match condition.
type ConditionTrace struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
	Result     bool   `json:"result"`
	Error      string `json:"error,omitempty"`
	// Params are the values of the params the expression refers to, filled in for the
	// deciding condition, so the explanation shows what the expression compared.
	// The map is shared between traces: read it, do not modify it.
	Params map[string]string `json:"params,omitempty"`
}

// Deciding returns the condition that stopped the policy from applying, if any.
func (p PolicyTrace) Deciding() *ConditionTrace {
	if len(p.Conditions) == 0 {
		return nil
	}
	last := p.Conditions[len(p.Conditions)-1]
	if last.Error != "" || !last.Result {
		return &last
	}
	return nil
}

// WriteExplain writes the human-readable account of a result that `eval -o explain`
// prints.
func (r *Result) WriteExplain(w io.Writer) error {
	t := r.Trace
	var b strings.Builder
	sa := "not found"
	if t.ServiceAccountFound {
		sa = "found"
	}
	pod := t.Pod
	if pod == "" {
		pod = "(unnamed)"
	}
	fmt.Fprintf(&b, "pod %s/%s, ServiceAccount %q (%s)\n", t.Namespace, pod, t.ServiceAccount, sa)
	for _, k := range slices.Sorted(maps.Keys(t.ServiceAccountAnnotations)) {
		fmt.Fprintf(&b, "  ServiceAccount annotation %s=%s\n", k, t.ServiceAccountAnnotations[k])
	}
	for _, p := range t.Policies {
		b.WriteString("\n")
		switch {
		case p.Error != "":
			fmt.Fprintf(&b, "FAILED   %s/%s (onError: %s)\n", p.Bundle, p.Policy, p.OnError)
		case !p.Matched:
			fmt.Fprintf(&b, "SKIPPED  %s/%s\n", p.Bundle, p.Policy)
		case len(p.Ops) > 0:
			fmt.Fprintf(&b, "APPLIED  %s/%s\n", p.Bundle, p.Policy)
		default:
			fmt.Fprintf(&b, "MATCHED  %s/%s (no changes)\n", p.Bundle, p.Policy)
		}
		if d := p.Deciding(); d != nil {
			if d.Error != "" {
				fmt.Fprintf(&b, "  condition %q failed: %s\n", d.Name, d.Error)
			} else {
				fmt.Fprintf(&b, "  condition %q was false\n", d.Name)
			}
			fmt.Fprintf(&b, "    %s\n", oneLine(d.Expression))
			for _, k := range slices.Sorted(maps.Keys(d.Params)) {
				fmt.Fprintf(&b, "    where params.%s = %s\n", k, d.Params[k])
			}
		} else if len(p.Conditions) > 0 {
			names := make([]string, len(p.Conditions))
			for i, c := range p.Conditions {
				names[i] = c.Name
			}
			fmt.Fprintf(&b, "  conditions true: %s\n", strings.Join(names, ", "))
		} else if p.Matched {
			b.WriteString("  no conditions: applies to every pod\n")
		}
		if p.Error != "" {
			fmt.Fprintf(&b, "  error: %s\n", p.Error)
			if p.OnError == OnErrorDeny {
				b.WriteString("  the pod is denied\n")
			} else {
				b.WriteString("  its changes were dropped; the other policies still apply\n")
			}
		}
		for _, c := range p.Changes {
			fmt.Fprintf(&b, "  + %s\n", c)
		}
		for _, n := range p.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
		fmt.Fprintf(&b, "  time: %s\n", p.Duration.Round(time.Microsecond))
	}
	b.WriteString("\n")
	switch {
	case r.Denied != "":
		fmt.Fprintf(&b, "result: DENIED: %s\n", r.Denied)
	case r.Mutated():
		fmt.Fprintf(&b, "result: mutated, %d patch operations\n", len(r.Patch))
	default:
		b.WriteString("result: not mutated\n")
	}
	fmt.Fprintf(&b, "total time: %s\n", t.Duration.Round(time.Microsecond))
	_, err := io.WriteString(w, b.String())
	return err
}
