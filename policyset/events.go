package policyset

import (
	"context"
	"os"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Component is the event source of the Events this package records.
const Component = "pod-identity-webhook"

// Event reasons, on bundle ConfigMaps.
const (
	// ReasonRejected (Warning): the ConfigMap's current content did not load, compile
	// or pass its tests; its last good version (or nothing) stays active.
	ReasonRejected = "BundleRejected"
	// ReasonActivated (Normal): the ConfigMap's current content is active.
	ReasonActivated = "BundleActivated"
)

// maxEventMessage keeps Event messages short enough for the API server (events.k8s.io
// caps a note at 1 KiB) and for `kubectl describe`; the log has the whole error.
const maxEventMessage = 1024

const truncatedSuffix = " … (truncated; the webhook log has the whole message)"

// truncateMessage cuts s to at most max bytes, on a UTF-8 boundary, saying so.
func truncateMessage(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(truncatedSuffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedSuffix
}

// startEventRecorder returns a recorder writing Events to the API server through a
// broadcaster that lives until ctx ends.
func startEventRecorder(ctx context.Context, client kubernetes.Interface) record.EventRecorder {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		b.Shutdown()
	}()
	// Host tells replicas apart: each one compiles and reports on its own.
	host, _ := os.Hostname()
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Component, Host: host})
}
