package webhook

import (
	"encoding/json"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
)

// Debug is what the --enable-debugging-handlers cache routes show and clear.
type Debug interface {
	// Dump returns a JSON-encodable view of the caches.
	Dump() any
	// Clear empties the caches; entries come back with the next informer event or resync.
	Clear()
}

// Upstream's debug routes.
const (
	debugCachePath      = "/debug/alpha/cache"
	debugCacheClearPath = "/debug/alpha/cache/clear"
	debugDenyPath       = "/debug/alpha/deny"
	debug500Path        = "/debug/alpha/500"
	debugDenyMessage    = "Test deny message"
)

// dumpHandler serves the caches as indented JSON.
func dumpHandler(d Debug) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b, err := json.MarshalIndent(d.Dump(), "", "  ")
		if err != nil {
			http.Error(w, "encoding the cache: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentTypeJSON)
		_, _ = w.Write(b)
	})
}

// clearHandler empties the caches; any method, as upstream.
func clearHandler(d Debug) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		d.Clear()
		klog.InfoS("caches cleared through " + debugCacheClearPath)
		w.WriteHeader(http.StatusOK)
	})
}

// denyHandler denies whatever it is sent. Unlike upstream's, which answered without
// apiVersion, kind and uid (so a v1 API server treated it as a webhook failure, not a
// denial), it echoes them when the body is a review, so it tests a real denial.
func denyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := &admissionv1.AdmissionResponse{Allowed: false, Result: deniedStatus(debugDenyMessage)}
		var review *admission.Review
		if body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes)); err == nil {
			if rv, err := admission.DecodeReview(body); err == nil {
				review = rv
				if rv.Request != nil {
					resp.UID = rv.Request.UID
				}
			}
		}
		_ = writeJSON(w, &admissionv1.AdmissionReview{TypeMeta: typeMeta(review), Response: resp})
	})
}

// errorHandler always fails, to test the API server's failurePolicy.
func errorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "test error", http.StatusInternalServerError)
	})
}
