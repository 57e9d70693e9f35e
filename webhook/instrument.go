package webhook

import (
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// Policies and bundle whose match upstream counted in pod_identity_webhook_pod_count,
// and the method label each gets.
const defaultBundle = "default"

var podCountMethods = map[string]string{
	"container-credentials": "container_credentials",
	"web-identity":          "sts_web_identity",
}

// recordAdmission updates the admission metrics for one request.
func recordAdmission(m *metrics.Metrics, out outcome, elapsed time.Duration) {
	m.Admissions.WithLabelValues(out.result, out.reason).Inc()
	m.AdmissionDuration.WithLabelValues(out.result).Observe(elapsed.Seconds())
	d := out.decision
	if d == nil || d.Result == nil {
		return
	}
	for _, p := range d.Result.Trace.Policies {
		m.PolicyDuration.WithLabelValues(p.Bundle, p.Policy).Observe(p.Duration.Seconds())
		if p.Error != "" {
			m.PolicyErrors.WithLabelValues(p.Bundle, p.Policy).Inc()
		}
		if p.MachineFailure != "" {
			m.MachineFailures.WithLabelValues(p.Bundle, p.Policy).Inc()
		}
		// Like upstream, a pod counts once its identity mode is selected, even when it
		// already had everything; a denied pod got nothing, so it does not count.
		if method, ok := podCountMethods[p.Policy]; ok && d.Allowed && p.Bundle == defaultBundle && p.Matched && p.Error == "" {
			m.PodCount.WithLabelValues(method).Inc()
		}
	}
}

// instrument records upstream's HTTP metrics for a route. path is the route's pattern,
// not the request's path, and unknown methods are folded into one label value, so a
// client cannot grow the label sets.
func instrument(m *metrics.Metrics, path string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			// Deferred so that a request that panicked still counts, as the 500 the
			// recover middleware below wrote.
			verb := methodLabel(r.Method)
			code := rec.status
			if code == 0 {
				code = http.StatusOK
			}
			micros := float64(time.Since(start)) / float64(time.Microsecond)
			m.HTTPRequestCount.WithLabelValues(verb, path, strconv.Itoa(code)).Inc()
			m.HTTPRequestLatencies.WithLabelValues(verb, path).Observe(micros)
			m.HTTPRequestDuration.WithLabelValues(verb, path).Observe(micros)
		}()
		next.ServeHTTP(rec, r)
	})
}

func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "OTHER"
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// recoverPanics is the last resort: a panic in a handler is logged with its stack and
// answered with 500 (when nothing was written yet) instead of net/http's dropped
// connection, so the API server sees an ordinary webhook failure.
func recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
				panic(v) // the handler asked net/http to abort the response
			}
			klog.ErrorS(nil, "panic while serving a request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			if rec.status == 0 {
				http.Error(rec, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}
