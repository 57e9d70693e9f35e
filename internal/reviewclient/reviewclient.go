// Package reviewclient posts AdmissionReviews to a webhook and classifies the answers,
// and summarises latencies, for the load tool (test/load) and the end-to-end load test.
package reviewclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Answer is what one AdmissionReview request got.
type Answer struct {
	// Kind is "" when the webhook answered 200 with a review; otherwise what went
	// wrong: request, timeout, transport-eof, connection-refused, connection-reset,
	// transport, status-<code> or bad-response, with Detail saying more.
	Kind, Detail string
	Proto        string // the HTTP protocol of the answer, e.g. HTTP/2.0
	// The review's response, when Kind is "".
	UID     string
	Allowed bool
	Message string // status.message
	Patch   []byte
}

// Post sends body (an AdmissionReview) to url and reads the answer.
func Post(ctx context.Context, hc *http.Client, url string, body []byte) Answer {
	var a Answer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		a.Kind, a.Detail = "request", err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		a.Kind, a.Detail = TransportKind(err), err.Error()
		return a
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	a.Proto = resp.Proto
	if err != nil {
		a.Kind, a.Detail = TransportKind(err), err.Error()
		return a
	}
	if resp.StatusCode != http.StatusOK {
		a.Kind, a.Detail = "status-"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data))
		return a
	}
	var review struct {
		Response *struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
			Status  *struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(data, &review); err != nil || review.Response == nil {
		a.Kind, a.Detail = "bad-response", fmt.Sprintf("%v: %.200s", err, data)
		return a
	}
	r := review.Response
	a.UID, a.Allowed, a.Patch = r.UID, r.Allowed, r.Patch
	if r.Status != nil {
		a.Message = r.Status.Message
	}
	return a
}

// TransportKind names a transport failure for counting.
func TransportKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "transport-eof"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection-refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection-reset"
	default:
		return "transport"
	}
}

// Latencies are nearest-rank percentiles, the maximum and the mean, in milliseconds.
type Latencies struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summarize returns the latencies of d (which it leaves as it is); zero when empty.
func Summarize(d []time.Duration) Latencies {
	if len(d) == 0 {
		return Latencies{}
	}
	sorted := slices.Clone(d)
	slices.Sort(sorted)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(sorted)))) - 1
		return Ms(sorted[min(max(i, 0), len(sorted)-1)])
	}
	var sum time.Duration
	for _, x := range sorted {
		sum += x
	}
	return Latencies{P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: Ms(sorted[len(sorted)-1]),
		Mean: Ms(sum / time.Duration(len(sorted)))}
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
