package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// fakeAdmitter answers with a fixed decision and remembers what it was asked.
type fakeAdmitter struct {
	decide func(ctx context.Context, attrs engine.Attributes, object []byte) (*admission.Decision, error)

	mu     sync.Mutex
	calls  int
	attrs  engine.Attributes
	object string
}

func (f *fakeAdmitter) Admit(ctx context.Context, attrs engine.Attributes, object []byte) (*admission.Decision, error) {
	f.mu.Lock()
	f.calls++
	f.attrs, f.object = attrs, string(object)
	f.mu.Unlock()
	return f.decide(ctx, attrs, object)
}

func (f *fakeAdmitter) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func answer(d *admission.Decision, err error) *fakeAdmitter {
	return &fakeAdmitter{decide: func(context.Context, engine.Attributes, []byte) (*admission.Decision, error) { return d, err }}
}

const (
	testPod   = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"app","namespace":"team"},"spec":{"serviceAccountName":"sa","containers":[{"name":"c","image":"i"}]}}`
	testPatch = `[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`
)

// review builds an AdmissionReview body; empty apiVersion/kind are left out.
func review(apiVersion, kind, uid, object string) string {
	tm := ""
	if apiVersion != "" {
		tm += `"apiVersion":"` + apiVersion + `",`
	}
	if kind != "" {
		tm += `"kind":"` + kind + `",`
	}
	return `{` + tm + `"request":{"uid":"` + uid + `","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"team","operation":"CREATE",` +
		`"userInfo":{"username":"alice"},"object":` + object + `}}`
}

// trace builds a result whose trace lists the given policies of the default bundle.
func trace(patch []engine.Op, policies ...engine.PolicyTrace) *engine.Result {
	return &engine.Result{Patch: patch, Trace: engine.Trace{Namespace: "team", Pod: "app", ServiceAccount: "sa", Policies: policies}}
}

func policy(name string, matched bool, errMsg string, ops ...engine.Op) engine.PolicyTrace {
	return engine.PolicyTrace{Bundle: "default", Policy: name, Matched: matched, Error: errMsg, Ops: ops, Duration: 3 * time.Millisecond}
}

var addLabel = engine.Op{Op: "add", Path: "/metadata/labels", Value: map[string]any{"a": "b"}}

func mutated() *admission.Decision {
	return &admission.Decision{Allowed: true, Patch: []byte(testPatch), Namespace: "team", ServiceAccount: "sa",
		Result: trace([]engine.Op{addLabel}, policy("container-credentials", false, ""), policy("web-identity", true, "", addLabel))}
}

func TestHandler(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(testPatch))
	notReady := func() error { return errors.New("ServiceAccount cache not synced") }
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		admitter    *fakeAdmitter
		ready       func() error

		wantCode        int
		wantContentType string
		wantBody        string
		wantCalls       int
		wantResult      string
		wantReason      string
	}{
		{
			name: "v1 mutated", body: review("admission.k8s.io/v1", "AdmissionReview", "uid-1", testPod),
			admitter: answer(mutated(), nil),
			wantCode: 200, wantContentType: "application/json", wantCalls: 1,
			wantBody:   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"uid-1","allowed":true,"patch":"` + b64 + `","patchType":"JSONPatch"}}`,
			wantResult: "mutated", wantReason: "policies-applied",
		},
		{
			name: "v1beta1 unmutated, no policy matched", body: review("admission.k8s.io/v1beta1", "AdmissionReview", "uid-2", testPod),
			admitter: answer(&admission.Decision{Allowed: true, Result: trace(nil, policy("container-credentials", false, ""), policy("web-identity", false, ""))}, nil),
			wantCode: 200, wantContentType: "application/json", wantCalls: 1,
			wantBody:   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","response":{"uid":"uid-2","allowed":true}}`,
			wantResult: "unmutated", wantReason: "no-policy-matched",
		},
		{
			name: "unmutated, a policy matched but changed nothing", body: review("admission.k8s.io/v1", "AdmissionReview", "uid-3", testPod),
			admitter: answer(&admission.Decision{Allowed: true, Result: trace(nil, policy("web-identity", true, ""))}, nil),
			wantCode: 200, wantContentType: "application/json", wantCalls: 1,
			wantBody:   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"uid-3","allowed":true}}`,
			wantResult: "unmutated", wantReason: "already-present",
		},
		{
			name: "unmutated because a policy failed", body: review("admission.k8s.io/v1", "AdmissionReview", "uid-4", testPod),
			admitter: answer(&admission.Decision{Allowed: true, Result: trace(nil, policy("web-identity", true, ""), policy("site", true, "rule: boom"))}, nil),
			wantCode: 200, wantContentType: "application/json", wantCalls: 1,
			wantBody:   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"uid-4","allowed":true}}`,
			wantResult: "unmutated", wantReason: "policy-error",
		},
		{
			name: "no TypeMeta gets v1", body: review("", "", "uid-5", testPod),
			admitter: answer(&admission.Decision{Allowed: true}, nil),
			wantCode: 200, wantContentType: "application/json", wantCalls: 1,
			wantBody:   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"uid-5","allowed":true}}`,
			wantResult: "unmutated", wantReason: "no-policy-matched",
		},
		{
			name: "denied", body: review("admission.k8s.io/v1", "AdmissionReview", "uid-6", testPod),
			admitter: answer(&admission.Decision{Allowed: false, Message: "policy site/check failed: no", Result: trace(nil, policy("check", true, "no"))}, nil),
			wantCode: 200, wantContentType: "application/json", wantCalls: 1,
			wantBody:   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"uid-6","allowed":false,"status":{"metadata":{},"message":"policy site/check failed: no","reason":"Forbidden","code":403}}}`,
			wantResult: "denied", wantReason: "policy-denied",
		},
		{
			name: "content type with charset", contentType: "application/json; charset=utf-8",
			body: review("admission.k8s.io/v1", "AdmissionReview", "uid-7", testPod), admitter: answer(mutated(), nil),
			wantCode: 200, wantContentType: "application/json", wantCalls: 1,
			wantBody:   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"uid-7","allowed":true,"patch":"` + b64 + `","patchType":"JSONPatch"}}`,
			wantResult: "mutated", wantReason: "policies-applied",
		},
		{
			name: "application/xml", contentType: "application/xml", body: review("admission.k8s.io/v1", "AdmissionReview", "u", testPod),
			wantCode: 415, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "invalid Content-Type \"application/xml\", expected application/json\n",
			wantResult: "error", wantReason: "bad-content-type",
		},
		{
			name: "no content type", contentType: "-", body: review("admission.k8s.io/v1", "AdmissionReview", "u", testPod),
			wantCode: 415, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "invalid Content-Type \"\", expected application/json\n",
			wantResult: "error", wantReason: "bad-content-type",
		},
		{
			name: "GET", method: http.MethodGet,
			wantCode: 405, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "method GET not allowed, expected POST\n",
			wantResult: "error", wantReason: "method-not-allowed",
		},
		{
			name: "invalid JSON", body: `{"request":`,
			wantCode: 400, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "not an AdmissionReview: unexpected end of JSON input\n",
			wantResult: "error", wantReason: "bad-request",
		},
		{
			name: "empty body", body: "",
			wantCode: 400, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "empty body: expected an AdmissionReview\n",
			wantResult: "error", wantReason: "bad-request",
		},
		{
			name: "no request", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
			wantCode: 400, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "AdmissionReview has no request\n",
			wantResult: "error", wantReason: "bad-request",
		},
		{
			name: "no object", body: `{"request":{"uid":"u"}}`,
			wantCode: 400, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "AdmissionReview request has no object\n",
			wantResult: "error", wantReason: "bad-request",
		},
		{
			name: "null object", body: review("admission.k8s.io/v1", "AdmissionReview", "u", "null"),
			wantCode: 400, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "AdmissionReview request has no object\n",
			wantResult: "error", wantReason: "bad-request",
		},
		{
			name: "object the engine cannot read", body: review("admission.k8s.io/v1", "AdmissionReview", "u", `"a string"`),
			admitter: answer(nil, &engine.InputError{Field: "object", Reason: "not a pod: json: cannot unmarshal string"}),
			wantCode: 400, wantContentType: "text/plain; charset=utf-8", wantCalls: 1,
			wantBody:   "object: not a pod: json: cannot unmarshal string\n",
			wantResult: "error", wantReason: "bad-request",
		},
		{
			name: "other Admit error", body: review("admission.k8s.io/v1", "AdmissionReview", "u", testPod),
			admitter: answer(nil, errors.New("encoding the patch: boom")),
			wantCode: 500, wantContentType: "text/plain; charset=utf-8", wantCalls: 1,
			wantBody:   "encoding the patch: boom\n",
			wantResult: "error", wantReason: "internal-error",
		},
		{
			name: "body too large", body: `{"x":"` + strings.Repeat("a", MaxRequestBytes) + `"}`,
			wantCode: 413, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "body larger than 8388608 bytes\n",
			wantResult: "error", wantReason: "body-too-large",
		},
		{
			name: "not ready", body: review("admission.k8s.io/v1", "AdmissionReview", "u", testPod), ready: notReady,
			wantCode: 503, wantContentType: "text/plain; charset=utf-8",
			wantBody:   "not ready: ServiceAccount cache not synced\n",
			wantResult: "error", wantReason: "not-ready",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			adm := tt.admitter
			if adm == nil {
				adm = answer(nil, errors.New("Admit must not be called"))
			}
			h := &Handler{Admitter: adm, Metrics: m, Ready: tt.ready}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/mutate", strings.NewReader(tt.body))
			switch tt.contentType {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantCode {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantCode)
			}
			if got := rec.Header().Get("Content-Type"); got != tt.wantContentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantContentType)
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Errorf("body =\n%s\nwant\n%s", got, tt.wantBody)
			}
			if got := adm.callCount(); got != tt.wantCalls {
				t.Errorf("Admit called %d times, want %d", got, tt.wantCalls)
			}
			if got := metricValue(t, m.Registry, "pod_identity_webhook_admissions_total", map[string]string{"result": tt.wantResult, "reason": tt.wantReason}); got != 1 {
				t.Errorf("admissions_total{result=%q,reason=%q} = %v, want 1", tt.wantResult, tt.wantReason, got)
			}
			if got := seriesCount(t, m.Registry, "pod_identity_webhook_admissions_total"); got != 1 {
				t.Errorf("admissions_total has %d series, want 1", got)
			}
			if got := metricValue(t, m.Registry, "pod_identity_webhook_admission_duration_seconds", map[string]string{"result": tt.wantResult}); got != 1 {
				t.Errorf("admission_duration_seconds{result=%q} has %v samples, want 1", tt.wantResult, got)
			}
		})
	}
}

// The admitter gets the request's attributes and the object as sent, and the patch
// in the response decodes to the decision's.
func TestHandlerPassesRequest(t *testing.T) {
	adm := answer(mutated(), nil)
	h := &Handler{Admitter: adm}
	req := httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(review("admission.k8s.io/v1", "AdmissionReview", "uid-9", testPod)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	if adm.object != testPod {
		t.Errorf("object = %s, want %s", adm.object, testPod)
	}
	want := engine.Attributes{UID: "uid-9", Namespace: "team", Operation: "CREATE",
		Kind:     engine.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource: engine.GroupVersionResource{Version: "v1", Resource: "pods"},
		UserInfo: engine.UserInfo{Username: "alice"}}
	gotJSON, _ := json.Marshal(adm.attrs)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("attributes = %s, want %s", gotJSON, wantJSON)
	}
	var resp struct {
		Response struct {
			Patch []byte `json:"patch"`
		} `json:"response"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if string(resp.Response.Patch) != testPatch {
		t.Errorf("patch = %s, want %s", resp.Response.Patch, testPatch)
	}
}

func TestRecordAdmission(t *testing.T) {
	wi, cc := policy("web-identity", true, "", addLabel), policy("container-credentials", true, "", addLabel)
	tests := []struct {
		name       string
		decision   *admission.Decision
		wantPods   map[string]float64
		wantErrors map[string]float64
	}{
		{
			name:     "web identity",
			decision: &admission.Decision{Allowed: true, Patch: []byte("[]"), Result: trace(nil, policy("container-credentials", false, ""), wi)},
			wantPods: map[string]float64{"sts_web_identity": 1, "container_credentials": 0},
		},
		{
			name:     "container credentials, nothing changed still counts",
			decision: &admission.Decision{Allowed: true, Result: trace(nil, policy("container-credentials", true, ""), policy("web-identity", false, ""))},
			wantPods: map[string]float64{"sts_web_identity": 0, "container_credentials": 1},
		},
		{
			name:       "failed policy does not count",
			decision:   &admission.Decision{Allowed: true, Result: trace(nil, policy("web-identity", true, "rule: boom"))},
			wantPods:   map[string]float64{"sts_web_identity": 0, "container_credentials": 0},
			wantErrors: map[string]float64{"web-identity": 1},
		},
		{
			name: "same policy name in another bundle does not count",
			decision: &admission.Decision{Allowed: true, Result: trace(nil, engine.PolicyTrace{
				Bundle: "site", Policy: "web-identity", Matched: true})},
			wantPods: map[string]float64{"sts_web_identity": 0, "container_credentials": 0},
		},
		{
			name:       "denied does not count",
			decision:   &admission.Decision{Allowed: false, Message: "no", Result: trace(nil, cc, policy("check", true, "no"))},
			wantPods:   map[string]float64{"sts_web_identity": 0, "container_credentials": 0},
			wantErrors: map[string]float64{"check": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			recordAdmission(m, outcome{result: "x", reason: "y", decision: tt.decision}, time.Millisecond)
			for method, want := range tt.wantPods {
				if got := metricValue(t, m.Registry, "pod_identity_webhook_pod_count", map[string]string{"method": method}); got != want {
					t.Errorf("pod_count{method=%q} = %v, want %v", method, got, want)
				}
			}
			for _, p := range tt.decision.Result.Trace.Policies {
				labels := map[string]string{"bundle": p.Bundle, "policy": p.Policy}
				if got, want := metricValue(t, m.Registry, "pod_identity_webhook_policy_errors_total", labels), tt.wantErrors[p.Policy]; got != want {
					t.Errorf("policy_errors_total{%s/%s} = %v, want %v", p.Bundle, p.Policy, got, want)
				}
			}
			if got, want := seriesCount(t, m.Registry, "pod_identity_webhook_policy_evaluation_duration_seconds"), len(tt.decision.Result.Trace.Policies); got != want {
				t.Errorf("policy duration series = %d, want %d", got, want)
			}
		})
	}
}

// Request bodies, and the buffers the objects are copied into, are reused
// (bodyBuffers). The object is valid during Admit only (see Admitter), but everything
// else the handler passes on must be a copy: the second request's body overwrites the
// first's buffer, which would change the first request's attributes if they referred
// to it.
func TestHandlerKeepsNothingOfTheBody(t *testing.T) {
	var objects []string
	var attrs []engine.Attributes
	adm := &fakeAdmitter{decide: func(_ context.Context, a engine.Attributes, object []byte) (*admission.Decision, error) {
		objects, attrs = append(objects, string(object)), append(attrs, a)
		return &admission.Decision{Allowed: true}, nil
	}}
	h := &Handler{Admitter: adm}
	pods := []string{testPod, strings.ReplaceAll(testPod, `"app"`, `"xyz"`)}
	for i, pod := range pods {
		// Same length, so the second body fits the first's buffer exactly.
		body := review("admission.k8s.io/v1", "AdmissionReview", fmt.Sprintf("uid-%d", i), pod)
		req := httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, rec.Code, rec.Body)
		}
	}
	for i, pod := range pods {
		if objects[i] != pod {
			t.Errorf("object of request %d was %s, want %s", i, objects[i], pod)
		}
		if want := fmt.Sprintf("uid-%d", i); string(attrs[i].UID) != want {
			t.Errorf("uid of request %d became %q, want %q", i, attrs[i].UID, want)
		}
	}
}
