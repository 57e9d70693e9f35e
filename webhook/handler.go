// Package webhook is the admission HTTP surface: the /mutate handler, the TLS server
// with certificate reload, health and readiness, metrics and the debug routes. It turns
// HTTP into calls of the shared admission path (package admission) and decisions back
// into AdmissionReviews; it makes no policy decision itself.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	gojson "github.com/goccy/go-json"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// MaxRequestBytes bounds an AdmissionReview body. The API server caps an object at
// about 3 MiB and a review carries at most object and oldObject, so 8 MiB is never
// reached by a real request; beyond it the answer is 413.
const MaxRequestBytes = 8 << 20

// The TypeMeta of a response whose request carried none.
const (
	defaultAPIVersion = "admission.k8s.io/v1"
	defaultKind       = "AdmissionReview"
)

// Admitter decides about one admission request; *admission.Admitter is the real one.
// An *engine.InputError means the object is not something the engine can read.
//
// object is in a buffer that is reused once the request is answered: Admit must not
// keep it, or anything that refers to its bytes, beyond that (the engine's memo keeps
// encoded patches only; TestEvaluateKeepsNothingOfTheObject).
type Admitter interface {
	Admit(ctx context.Context, attrs engine.Attributes, object []byte) (*admission.Decision, error)
}

// Handler serves /mutate.
//
// Only well-formed requests get an AdmissionReview back. Anything malformed (wrong
// method, content type, body, a review without a request or object) gets a plain-text
// HTTP error instead: to the API server that is a webhook failure, so the webhook's
// failurePolicy decides, whereas an allowed:false review (what upstream answered)
// would reject the pod even under failurePolicy: Ignore. The same holds while not
// ready (503): a pod is never judged from caches that have not synced yet.
type Handler struct {
	Admitter Admitter
	// Metrics receives the admission metrics; nil records none.
	Metrics *metrics.Metrics
	// Ready says whether requests may be served; nil means always. Its error is the
	// reason given in the 503.
	Ready func() error
}

// outcome is what one request came to, for metrics and the log line.
type outcome struct {
	result    string // mutated, unmutated, denied, error
	reason    string
	uid       types.UID
	namespace string
	pod       string
	// decision is set once Admit answered.
	decision *admission.Decision
	err      error
}

// errorOutcome is the outcome of a request answered with an HTTP error.
func errorOutcome(reason string, err error) outcome {
	return outcome{result: resultError, reason: reason, err: err}
}

// Results and reasons of the Admissions metric.
const (
	resultMutated   = "mutated"
	resultUnmutated = "unmutated"
	resultDenied    = "denied"
	resultError     = "error"

	reasonPoliciesApplied = "policies-applied"
	reasonNoPolicyMatched = "no-policy-matched"
	reasonAlreadyPresent  = "already-present" // a policy matched but changed nothing
	reasonPolicyError     = "policy-error"    // nothing changed and a policy failed (onError: skip)
	reasonPolicyDenied    = "policy-denied"
	reasonMethod          = "method-not-allowed"
	reasonBadContentType  = "bad-content-type"
	reasonBodyTooLarge    = "body-too-large"
	reasonBadRequest      = "bad-request"
	reasonNotReady        = "not-ready"
	reasonInternalError   = "internal-error"
)

const contentTypeJSON = "application/json"

// ServeHTTP answers one admission request. Only POST is accepted (the API server only
// posts; upstream accepted any method), anything else gets 405.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// What a panic below leaves: the recover middleware then answers 500.
	out := errorOutcome(reasonInternalError, errors.New("panic while handling the request"))
	defer func() { h.record(out, time.Since(start)) }()
	out = h.serve(w, r)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) outcome {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return httpError(w, http.StatusMethodNotAllowed, reasonMethod, fmt.Errorf("method %s not allowed, expected POST", r.Method))
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return httpError(w, http.StatusUnsupportedMediaType, reasonBadContentType, err)
	}
	if h.Ready != nil {
		if err := h.Ready(); err != nil {
			return httpError(w, http.StatusServiceUnavailable, reasonNotReady, fmt.Errorf("not ready: %v", err))
		}
	}
	body, err := readBody(w, r)
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			return httpError(w, http.StatusRequestEntityTooLarge, reasonBodyTooLarge, fmt.Errorf("body larger than %d bytes", tooLarge.Limit))
		}
		return httpError(w, http.StatusBadRequest, reasonBadRequest, fmt.Errorf("reading the body: %v", err))
	}
	// The object is copied into a reused buffer, given back once the request is
	// answered (nothing keeps it, see Admitter); the review's other fields are
	// copies, so the body is given back at once.
	objectBuf := takeBody(len(body))
	defer releaseBody(objectBuf)
	review, err := admission.DecodeReviewInto(body, objectBuf)
	releaseBody(body)
	if err != nil {
		return httpError(w, http.StatusBadRequest, reasonBadRequest, err)
	}
	req := review.Request
	if req == nil {
		return httpError(w, http.StatusBadRequest, reasonBadRequest, errors.New("AdmissionReview has no request"))
	}
	if len(bytes.TrimSpace(req.Object.Raw)) == 0 {
		out := httpError(w, http.StatusBadRequest, reasonBadRequest, errors.New("AdmissionReview request has no object"))
		out.uid, out.namespace, out.pod = req.UID, req.Namespace, req.Name
		return out
	}

	d, err := h.Admitter.Admit(r.Context(), admission.Attributes(req), req.Object.Raw)
	if err != nil {
		var out outcome
		if inputErr := (*engine.InputError)(nil); errors.As(err, &inputErr) {
			out = httpError(w, http.StatusBadRequest, reasonBadRequest, err)
		} else {
			out = httpError(w, http.StatusInternalServerError, reasonInternalError, err)
		}
		out.uid, out.namespace, out.pod = req.UID, req.Namespace, req.Name
		return out
	}
	if d == nil {
		out := httpError(w, http.StatusInternalServerError, reasonInternalError, errors.New("no decision"))
		out.uid, out.namespace, out.pod = req.UID, req.Namespace, req.Name
		return out
	}

	out := classify(d)
	out.uid, out.namespace, out.pod = req.UID, req.Namespace, podName(req, d)
	if d.Namespace != "" {
		out.namespace = d.Namespace
	}
	if err := writeJSON(w, reviewResponse(review, d)); err != nil {
		out.err = err
	}
	return out
}

// readBody reads the request body, at most MaxRequestBytes, into a buffer of exactly
// Content-Length bytes when it is given. io.ReadAll and bytes.Buffer would grow a
// buffer in steps, allocating two to three times the ~10 KiB of a typical review.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	n := r.ContentLength
	if n <= 0 || n > MaxRequestBytes {
		return io.ReadAll(body)
	}
	buf := takeBody(int(n))
	if _, err := io.ReadFull(body, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("body shorter than its Content-Length %d: %w", n, err)
		}
		return nil, err
	}
	// The body must end here; net/http enforces Content-Length, but a reader that
	// does not would otherwise have its excess silently ignored.
	var extra [1]byte
	if m, err := body.Read(extra[:]); m > 0 {
		return nil, fmt.Errorf("body longer than its Content-Length %d", n)
	} else if err != nil && err != io.EOF {
		return nil, err
	}
	return buf, nil
}

// bodyBuffers holds request body buffers, and the buffers the objects are copied
// into, for reuse: a typical review is ~12 KiB, a sixth of what a miss allocates.
// Buffers larger than maxPooledBody are not kept.
var bodyBuffers sync.Pool

const maxPooledBody = 256 << 10

// takeBody returns a buffer of n bytes, reused when one large enough is free.
func takeBody(n int) []byte {
	if n <= maxPooledBody {
		if p, _ := bodyBuffers.Get().(*[]byte); p != nil {
			if cap(*p) >= n {
				return (*p)[:n]
			}
		}
	}
	return make([]byte, n)
}

// releaseBody gives a body back for reuse; nothing may refer to it afterwards.
func releaseBody(b []byte) {
	if cap(b) > 0 && cap(b) <= maxPooledBody {
		bodyBuffers.Put(&b)
	}
}

// classify names the result and reason of a decision.
func classify(d *admission.Decision) outcome {
	out := outcome{decision: d}
	switch {
	case !d.Allowed:
		out.result, out.reason = resultDenied, reasonPolicyDenied
	case len(d.Patch) > 0:
		out.result, out.reason = resultMutated, reasonPoliciesApplied
	default:
		out.result, out.reason = resultUnmutated, reasonNoPolicyMatched
		if d.Result == nil {
			break
		}
		for _, p := range d.Result.Trace.Policies {
			if p.Error != "" {
				out.reason = reasonPolicyError
				break
			}
			if p.Matched {
				out.reason = reasonAlreadyPresent
			}
		}
	}
	return out
}

// checkContentType accepts application/json with any parameters (charset=utf-8):
// upstream's exact string match refused those.
func checkContentType(header string) error {
	mediaType, _, err := mime.ParseMediaType(header)
	if err != nil || mediaType != contentTypeJSON {
		return fmt.Errorf("invalid Content-Type %q, expected %s", header, contentTypeJSON)
	}
	return nil
}

// reviewResponse builds the AdmissionReview answering review with d. v1 and v1beta1
// have the same shape, so one type serves both; the request's apiVersion and kind are
// echoed because a v1 API server refuses a response without them.
func reviewResponse(review *admission.Review, d *admission.Decision) *admissionv1.AdmissionReview {
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: d.Allowed}
	if !d.Allowed {
		resp.Result = deniedStatus(d.Message)
	} else if len(d.Patch) > 0 {
		// The API server wants patchType exactly when there is a patch.
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = d.Patch, &pt
	}
	return &admissionv1.AdmissionReview{TypeMeta: typeMeta(review), Response: resp}
}

// deniedStatus is the status of a denial, as controller-runtime's admission.Denied
// builds it.
func deniedStatus(message string) *metav1.Status {
	return &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: message}
}

// typeMeta echoes the request's apiVersion and kind, defaulting each that is missing.
func typeMeta(review *admission.Review) metav1.TypeMeta {
	tm := metav1.TypeMeta{APIVersion: defaultAPIVersion, Kind: defaultKind}
	if review != nil && review.APIVersion != "" {
		tm.APIVersion = review.APIVersion
	}
	if review != nil && review.Kind != "" {
		tm.Kind = review.Kind
	}
	return tm
}

// writeJSON answers 200 with v as JSON, encoded into a reused buffer (the response
// carries the patch in base64, a third larger than the patch).
func writeJSON(w http.ResponseWriter, v any) error {
	buf := responseBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			responseBuffers.Put(buf)
		}
	}()
	buf.Reset()
	if err := gojson.NewEncoder(buf).Encode(v); err != nil {
		http.Error(w, "encoding the response: "+err.Error(), http.StatusInternalServerError)
		return err
	}
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))) // Encode ends with a newline
	return err
}

var responseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// httpError answers with a one-line text error and returns the matching outcome.
func httpError(w http.ResponseWriter, code int, reason string, err error) outcome {
	http.Error(w, err.Error(), code)
	return errorOutcome(reason, err)
}

// podName is the pod's name for logs: the trace's (name, or generateName followed by
// "*"), else the request's.
func podName(req *admissionv1.AdmissionRequest, d *admission.Decision) string {
	if d != nil && d.Result != nil && d.Result.Trace.Pod != "" {
		return d.Result.Trace.Pod
	}
	return req.Name
}

// record logs the request and updates the admission metrics.
func (h *Handler) record(out outcome, elapsed time.Duration) {
	logAdmission(out, elapsed)
	if h.Metrics != nil {
		recordAdmission(h.Metrics, out, elapsed)
	}
}

// logAdmission writes the one log line of a request. Levels: denials, internal errors
// and admissions in which a policy failed (onError: skip) at 0 (someone should look),
// malformed requests at 0 (a client is broken), not-ready at 1 (expected while
// starting), mutations at 1, unmutated pods at 2 (most pods in a cluster).
func logAdmission(out outcome, elapsed time.Duration) {
	d := out.decision
	if d != nil && d.ServiceAccountError != nil {
		klog.ErrorS(d.ServiceAccountError, "reading the ServiceAccount failed; the pod was evaluated without it",
			"uid", out.uid, "namespace", d.Namespace, "serviceAccount", d.ServiceAccount)
	}
	if d != nil && d.Result != nil {
		for _, p := range d.Result.Trace.Policies {
			if p.MachineFailure != "" {
				klog.ErrorS(nil, "the IR machine failed on a rule, which was evaluated by topdown instead; please report it with the policy",
					"uid", out.uid, "bundle", p.Bundle, "policy", p.Policy, "failure", p.MachineFailure)
			}
		}
	}
	// The level first: the line of an ordinary admission is not written at the default
	// verbosity, and building its fields cost a kilobyte per request.
	policyFailed := d != nil && hasFailedPolicy(d)
	internalError := out.result == resultError && out.reason == reasonInternalError
	var level klog.Level
	switch {
	case internalError:
	case out.result == resultError && out.reason == reasonNotReady:
		level = 1
	case out.result == resultError, out.result == resultDenied, policyFailed:
	case out.result == resultMutated:
		level = 1
	default:
		level = 2
	}
	if !internalError && !klog.V(level).Enabled() {
		return
	}

	kv := []any{"namespace", out.namespace, "pod", out.pod}
	if d != nil {
		kv = append(kv, "serviceAccount", d.ServiceAccount)
	}
	kv = append(kv, "uid", out.uid, "result", out.result, "reason", out.reason)
	if d != nil {
		applied, failed := policyNames(d)
		kv = append(kv, "policies", applied)
		if len(failed) > 0 {
			kv = append(kv, "failedPolicies", failed, "policyErrors", policyErrors(d))
		}
		if d.Result != nil {
			kv = append(kv, "patchOps", len(d.Result.Patch))
		}
		if !d.Allowed {
			kv = append(kv, "message", d.Message)
		}
	}
	kv = append(kv, "duration", elapsed)
	switch {
	case internalError:
		klog.ErrorS(out.err, "admission failed", kv...)
	case out.result == resultError:
		klog.V(level).InfoS("admission failed", append(kv, "error", errString(out.err))...)
	default:
		klog.V(level).InfoS("admission", kv...)
	}
}

// hasFailedPolicy says a policy of the decision failed.
func hasFailedPolicy(d *admission.Decision) bool {
	if d.Result == nil {
		return false
	}
	for _, p := range d.Result.Trace.Policies {
		if p.Error != "" {
			return true
		}
	}
	return false
}

// policyNames lists the policies that matched without error and those that failed,
// as bundle/policy.
func policyNames(d *admission.Decision) (applied, failed []string) {
	if d.Result == nil {
		return nil, nil
	}
	for _, p := range d.Result.Trace.Policies {
		switch {
		case p.Error != "":
			failed = append(failed, p.Bundle+"/"+p.Policy)
		case p.Matched:
			applied = append(applied, p.Bundle+"/"+p.Policy)
		}
	}
	return applied, failed
}

// policyErrors lists the errors of the policies that failed, as "bundle/policy: error".
func policyErrors(d *admission.Decision) []string {
	var out []string
	for _, p := range d.Result.Trace.Policies {
		if p.Error != "" {
			out = append(out, p.Bundle+"/"+p.Policy+": "+p.Error)
		}
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
