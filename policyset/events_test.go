package policyset

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// Without an injected recorder, Events go to the API server through an
// EventBroadcaster, as component pod-identity-webhook, on the ConfigMap.
func TestEventsThroughTheAPI(t *testing.T) {
	client := fake.NewSimpleClientset(bundleConfigMap("site", map[string]string{"manifest.yaml": "kind: Nope"}, nil))
	m, err := New(Options{Client: client, Namespace: testNamespace, Selector: testSelector, Metrics: metrics.New(),
		Dirs: []string{writeTempBundle(t, labelBundle("base", "base", "1"))}, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		<-m.Done()
	}()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var events []corev1.Event
	waitFor(t, "the Event", func() bool {
		list, err := client.CoreV1().Events(testNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		events = list.Items
		return len(events) > 0
	})
	if len(events) != 1 {
		t.Fatalf("%d events, want 1: %+v", len(events), events)
	}
	ev := events[0]
	got := []string{ev.Type, ev.Reason, ev.InvolvedObject.Kind, ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name, ev.Source.Component, ev.Message}
	want := []string{corev1.EventTypeWarning, ReasonRejected, "ConfigMap", testNamespace + "/site", Component,
		`configmap policy/site: manifest.yaml: apiVersion: must be "pod-identity-webhook.io/v1alpha1", got ""`}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event (type, reason, kind, object, component, message) = %q, want %q", got, want)
		}
	}
}

func writeTempBundle(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	writeBundleDir(t, dir, files)
	return dir
}

func TestTruncateMessage(t *testing.T) {
	long := strings.Repeat("x", 2000)
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"short", "short", 1024, "short"},
		{"exactly max", strings.Repeat("y", 1024), 1024, strings.Repeat("y", 1024)},
		{"long", long, 1024, long[:1024-len(truncatedSuffix)] + truncatedSuffix},
		// "é" is 2 bytes; the cut falls inside one and moves back before it.
		{"rune boundary", strings.Repeat("é", 100), 60 + len(truncatedSuffix) + 1, strings.Repeat("é", 30) + truncatedSuffix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := truncateMessage(tt.in, tt.max)
			if got != tt.want {
				t.Fatalf("truncateMessage = %q (%d bytes), want %q", got, len(got), tt.want)
			}
			if len(got) > tt.max || !utf8.ValidString(got) {
				t.Fatalf("%d bytes (max %d), valid UTF-8 %v", len(got), tt.max, utf8.ValidString(got))
			}
		})
	}
}
