package policyset

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

const (
	testNamespace = "policy"
	testSelector  = "pod-identity-webhook.io/bundle=true"
	// deadline for anything asynchronous: generous, a rebuild with the default bundle
	// under -race on a busy machine takes seconds.
	deadline = 60 * time.Second
)

// --- bundles ---

// labelBundle is a bundle named name whose one policy sets the pod label key=value.
// Its Rego package is the name with '-' as '_'; its test checks the mutation.
func labelBundle(name, key, value string) map[string]string {
	pkg := strings.ReplaceAll(name, "-", "_")
	return map[string]string{
		"manifest.yaml": fmt.Sprintf(`apiVersion: pod-identity-webhook.io/v1alpha1
kind: Bundle
name: %s
policies:
  - name: label
    match:
      - name: has-containers
        expression: has(object.spec.containers)
    rule: data.%s.mutations
`, name, pkg),
		pkg + ".rego": fmt.Sprintf(`package %s

mutations := [{"op": "set-label", "key": %q, "value": %q}]
`, pkg, key, value),
		pkg + "_test.rego": fmt.Sprintf(`package %s_test

import data.%s

test_sets_the_label if {
	%s.mutations == [{"op": "set-label", "key": %q, "value": %q}]
}
`, pkg, pkg, pkg, key, value),
	}
}

// with returns a copy of files with the given keys replaced (or added).
func with(files map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range files {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func bundleConfigMap(name string, data map[string]string, annotations map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace,
			Labels: map[string]string{"pod-identity-webhook.io/bundle": "true"}, Annotations: annotations},
		Data: data,
	}
}

func writeBundleDir(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		// Written aside and renamed into place, so that a rebuild never reads a
		// half-written file (the temporary name is hidden and not .rego).
		tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
}

// --- events ---

type recordedEvent struct{ Object, Type, Reason, Message string }

// eventLog is a record.EventRecorder that keeps which object each Event is about
// (record.FakeRecorder does not).
type eventLog struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (l *eventLog) Event(obj runtime.Object, eventType, reason, message string) {
	name := "?"
	if a, err := meta.Accessor(obj); err == nil {
		name = a.GetNamespace() + "/" + a.GetName()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, recordedEvent{name, eventType, reason, message})
}

func (l *eventLog) Eventf(obj runtime.Object, eventType, reason, format string, args ...any) {
	l.Event(obj, eventType, reason, fmt.Sprintf(format, args...))
}

func (l *eventLog) AnnotatedEventf(obj runtime.Object, _ map[string]string, eventType, reason, format string, args ...any) {
	l.Event(obj, eventType, reason, fmt.Sprintf(format, args...))
}

func (l *eventLog) all() []recordedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]recordedEvent(nil), l.events...)
}

// --- harness ---

type harness struct {
	t       *testing.T
	client  *fake.Clientset
	events  *eventLog
	metrics *metrics.Metrics
	m       *Manager
	cancel  context.CancelFunc
}

// newHarness makes a manager with a fake clientset holding objects, an eventLog and
// fresh metrics; opts may set DefaultBundle and Dirs. ConfigMap bundles are on.
func newHarness(t *testing.T, opts Options, objects ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, client: fake.NewSimpleClientset(objects...), events: &eventLog{}, metrics: metrics.New()}
	opts.Client = h.client
	opts.Namespace = testNamespace
	opts.Selector = testSelector
	opts.Metrics = h.metrics
	opts.Recorder = h.events
	opts.Debounce = 20 * time.Millisecond
	opts.Compile.Params = map[string]any{"annotationPrefix": "eks.amazonaws.com"}
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.m = m
	return h
}

// start starts the manager; it is stopped (and waited for) when the test ends.
func (h *harness) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.m.Done():
		case <-time.After(deadline):
			h.t.Errorf("the manager did not stop")
		}
	})
	return h.m.Start(ctx)
}

func (h *harness) mustStart() {
	h.t.Helper()
	if err := h.start(); err != nil {
		h.t.Fatalf("Start: %v", err)
	}
}

func (h *harness) create(cm *corev1.ConfigMap) {
	h.t.Helper()
	if _, err := h.client.CoreV1().ConfigMaps(cm.Namespace).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) update(cm *corev1.ConfigMap) {
	h.t.Helper()
	if _, err := h.client.CoreV1().ConfigMaps(cm.Namespace).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) delete(name string) {
	h.t.Helper()
	if err := h.client.CoreV1().ConfigMaps(testNamespace).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// waitGeneration waits until generation n is active.
func (h *harness) waitGeneration(n uint64) {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("generation %d", n), func() bool { return h.m.Generation() >= n })
	if got := h.m.Generation(); got != n {
		h.t.Fatalf("generation = %d, want %d", got, n)
	}
}

// waitEvents waits until n Events were recorded and returns them.
func (h *harness) waitEvents(n int) []recordedEvent {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("%d events", n), func() bool { return len(h.events.all()) >= n })
	return h.events.all()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// --- evaluation ---

const testPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns","labels":{"app":"x"}},"spec":{"containers":[{"name":"c","image":"i"}]}}`

// patchOf evaluates the test pod with prog and returns its JSON Patch as JSON.
func patchOf(t *testing.T, prog *engine.Program) string {
	t.Helper()
	if prog == nil {
		t.Fatal("no active program")
	}
	res, err := prog.Evaluate(context.Background(), engine.Request{Object: []byte(testPod), Attributes: engine.PodCreate("ns", "p")}, engine.EvalOptions{})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	if failed := res.Failed(); len(failed) > 0 {
		t.Fatalf("policy failed: %+v", failed)
	}
	return patchString(res.Patch)
}

func patchString(p []engine.Op) string {
	out, err := json.Marshal(p)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(out)
}

func addLabel(key, value string) string {
	return fmt.Sprintf(`{"op":"add","path":"/metadata/labels/%s","value":%q}`, key, value)
}

func patch(ops ...string) string {
	if len(ops) == 0 {
		return "null"
	}
	return "[" + strings.Join(ops, ",") + "]"
}

func bundleNames(prog *engine.Program) []string {
	var out []string
	for _, b := range prog.Bundles() {
		out = append(out, b.Name())
	}
	return out
}

// --- metrics ---

func (h *harness) failures(source string) float64 {
	var m dto.Metric
	if err := h.metrics.BundleLoadFailures.WithLabelValues(source).Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func (h *harness) generationMetric() float64 {
	var m dto.Metric
	if err := h.metrics.BundleGeneration.Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// activeMetric lists the BundleActive series as "bundle source=value", sorted.
func (h *harness) activeMetric() []string {
	fams, err := h.metrics.Registry.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		if f.GetName() != "pod_identity_webhook_bundle_active" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out = append(out, fmt.Sprintf("%s %s=%g", l["bundle"], l["source"], m.GetGauge().GetValue()))
		}
	}
	sort.Strings(out)
	return out
}
