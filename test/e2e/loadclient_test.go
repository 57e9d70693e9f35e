package e2e

// An open-loop AdmissionReview client for the load tests: the measurement of
// test/load (latency from each request's scheduled send time, so a stall shows in the
// latency of every request it delayed; a bound on requests in flight; the server's CPU
// from /proc), in the test process, HTTP/2 over TLS as the API server sends reviews.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/reviewclient"
)

// reviewClient posts AdmissionReviews to one webhook's /mutate.
type reviewClient struct {
	url string
	tr  *http.Transport
	hc  *http.Client
}

// newReviewClient trusts the harness webhook CA and speaks HTTP/2 only.
func newReviewClient(t testing.TB, port int) *reviewClient {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cluster.PKI.WebhookCA.PEM) {
		t.Fatal("no webhook CA")
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	var p http.Protocols
	p.SetHTTP2(true)
	tr.Protocols = &p
	c := &reviewClient{url: fmt.Sprintf("https://127.0.0.1:%d/mutate", port), tr: tr,
		// The API server's default webhook timeout.
		hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// post sends one review and classifies the answer. uid is the request's UID, which the
// answer must echo.
func (c *reviewClient) post(ctx context.Context, body []byte, uid string) reviewclient.Answer {
	a := reviewclient.Post(ctx, c.hc, c.url, body)
	if a.Kind == "" && a.UID != uid {
		a.Kind, a.Detail = "uid-mismatch", fmt.Sprintf("got %q, want %q", a.UID, uid)
	}
	return a
}

// openLoop calls send(k, scheduled) for k = 0, 1, ... at rate per second from start
// until end, each on its own goroutine, with at most maxInflight outstanding (the
// scheduler waits for a slot, and that wait is in the latencies because they run from
// the scheduled time). It returns once every request has finished, with how often the
// bound was hit and the scheduler's worst lag.
func openLoop(start, end time.Time, rate float64, maxInflight int, send func(k int, scheduled time.Time)) (limitHits int, maxLag time.Duration) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxInflight)
	interval := float64(time.Second) / rate
	for k := 0; ; k++ {
		sched := start.Add(time.Duration(float64(k) * interval))
		if !sched.Before(end) {
			break
		}
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		select {
		case slots <- struct{}{}:
		default:
			limitHits++
			slots <- struct{}{}
		}
		maxLag = max(maxLag, time.Since(sched))
		wg.Go(func() {
			defer func() { <-slots }()
			send(k, sched)
		})
	}
	wg.Wait()
	return limitHits, maxLag
}

// processCPU returns the user+system CPU time of process pid so far (from
// /proc/<pid>/stat, USER_HZ = 100).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// Metrics reads every metric of the webhook's /metrics in one GET: by name, the
// sample of an unlabelled metric, the sum of the samples of a labelled one.
func (w *Webhook) Metrics(t testing.TB) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := scrape(ctx, w.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scrape reads metricsURL/metrics.
func scrape(ctx context.Context, metricsURL string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/metrics: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", metricsURL, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", sc.Text(), err)
		}
		out[m[1]] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s/metrics: %w", metricsURL, err)
	}
	return out, nil
}
