package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
)

// recorder is a reusable http.ResponseWriter: the response bytes are kept (the
// handler really encodes and writes them) and reset between iterations, so the
// harness costs the same few nanoseconds on both sides.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(p)
}

func (r *recorder) reset() {
	clear(r.header)
	r.code = 0
	r.body.Reset()
}

// body is a reusable request body.
type body struct{ bytes.Reader }

func (*body) Close() error { return nil }

// call is one reusable request against a handler.
type call struct {
	req  *http.Request
	body *body
	rec  *recorder
}

func newCall() *call {
	req, err := http.NewRequest(http.MethodPost, "https://webhook.example/mutate", nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := &call{req: req, body: &body{}, rec: newRecorder()}
	req.Body = c.body
	return c
}

// serve sends b to h; the response is in c.rec.
func (c *call) serve(h http.Handler, b []byte) {
	c.body.Reset(b)
	c.req.ContentLength = int64(len(b))
	c.rec.reset()
	h.ServeHTTP(c.rec, c.req)
}

// response decodes the last response: it must be a 200 AdmissionReview that allows
// the pod.
func (c *call) response() (*admissionv1.AdmissionResponse, error) {
	if c.rec.code != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", c.rec.code, c.rec.body.String())
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(c.rec.body.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("response is no AdmissionReview: %v", err)
	}
	if out.Response == nil || !out.Response.Allowed {
		return nil, fmt.Errorf("response does not allow the pod: %s", c.rec.body.String())
	}
	return out.Response, nil
}
