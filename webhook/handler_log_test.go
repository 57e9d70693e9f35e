package webhook

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// TestFailedPolicyLoggedByDefault: a policy that fails with onError: skip does not stop
// the pod (mutated by the other policies, or not at all), but docs/policies.md promises
// the failure is logged: the admission's line is written at the default verbosity, and
// it carries each failed policy's error, not only its name.
func TestFailedPolicyLoggedByDefault(t *testing.T) {
	var buf bytes.Buffer
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, v := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL", "v": "0"} {
		if err := fs.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	klog.SetOutput(&buf)
	t.Cleanup(func() {
		klog.SetOutput(nil)
		_ = fs.Set("logtostderr", "true")
	})

	failed := engine.PolicyTrace{Bundle: "site", Policy: "image-rewrite", Matched: true, Error: "json-patch: /spec/containers/0/image is not allowed"}
	applied := engine.PolicyTrace{Bundle: "default", Policy: "web-identity", Matched: true}
	for _, tc := range []struct {
		name  string
		patch []byte
	}{
		{"mutated", []byte(`[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`)},
		{"unmutated", nil},
	} {
		buf.Reset()
		d := &admission.Decision{Allowed: true, Patch: tc.patch, Namespace: "ns", ServiceAccount: "app",
			Result: &engine.Result{Trace: engine.Trace{Policies: []engine.PolicyTrace{applied, failed}}}}
		out := classify(d)
		out.namespace, out.pod = "ns", "p-"+tc.name
		logAdmission(out, time.Millisecond)
		klog.Flush()
		line := buf.String()
		for _, want := range []string{`pod="p-` + tc.name + `"`, "site/image-rewrite", "/spec/containers/0/image is not allowed"} {
			if !strings.Contains(line, want) {
				t.Errorf("%s: the log at -v=0 lacks %q: %q", tc.name, want, line)
			}
		}
	}

	// An admission without a failure stays at -v=1 (mutated) and -v=2 (unmutated).
	buf.Reset()
	d := &admission.Decision{Allowed: true, Patch: []byte(`[]`), Result: &engine.Result{Trace: engine.Trace{Policies: []engine.PolicyTrace{applied}}}}
	logAdmission(classify(d), time.Millisecond)
	klog.Flush()
	if buf.Len() != 0 {
		t.Errorf("a clean admission was logged at -v=0: %q", buf.String())
	}
}
