package sources

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

const (
	prefix = "eks.amazonaws.com"
	// pollInterval and deadline bound every wait for an asynchronous effect: short
	// polls keep tests fast, the generous deadline keeps them steady on a busy machine.
	pollInterval = 5 * time.Millisecond
	deadline     = 10 * time.Second
)

// startCluster builds and starts a Cluster on client, stopped when the test ends.
func startCluster(t *testing.T, client *fake.Clientset, opts Options) *Cluster {
	t.Helper()
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.AnnotationPrefix == "" {
		opts.AnnotationPrefix = prefix
	}
	c, err := NewCluster(client, opts)
	if err != nil {
		t.Fatalf("NewCluster: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

// startReady is startCluster, then waits until Ready.
func startReady(t *testing.T, client *fake.Clientset, opts Options) *Cluster {
	t.Helper()
	c := startCluster(t, client, opts)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := c.WaitForReady(ctx); err != nil {
		t.Fatalf("WaitForReady: %v", err)
	}
	return c
}

// eventually polls cond until it holds, or fails the test after the deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollInterval)
	}
}

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// countActions counts the client's calls of verb on resource.
func countActions(client *fake.Clientset, verb, resource string) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

// serviceAccount is a ServiceAccount manifest.
func serviceAccount(ns, name string, annotations map[string]string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}}
}

// ignoreCached leaves out the policy input a ServiceAccount caches once used.
var ignoreCached = cmpopts.IgnoreUnexported(engine.ServiceAccount{})
