// Command load is the webhook's load generator: AdmissionReviews over TLS (HTTP/2 by
// default, as the API server sends them) to a /mutate URL, in a closed loop at a fixed
// concurrency or an open loop at a fixed rate, with latency percentiles, errors by
// kind, and the server's CPU per request read from /proc.
//
//	go run ./test/load --url https://127.0.0.1:8443/mutate --insecure --size typical --vary --concurrency 32
//	go run ./test/load --url https://127.0.0.1:8443/mutate --ca tls.crt --rate 400 --server-pid 1234 --json
//
// Closed loop: --concurrency workers each send a request, wait for the answer, send
// the next. Open loop (--rate > 0): requests are scheduled at fixed intervals whatever
// the answers, each one's latency runs from its scheduled send time, so a stall shows
// up in the latency of every request it delayed (no coordinated omission). At most
// --max-inflight requests are outstanding; when the bound is hit the scheduler waits
// (the wait is in the latencies) and the report says how often.
//
// Every request carries a fresh request UID (the API server never repeats one). With
// --vary each request is also a pod of a new template (see test/bench/reviews), which
// defeats memoisation; without it every request is the same pod (cache hits).
//
// test/load/run.sh runs the scenarios against test/load/serverless.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/reviewclient"
	"github.com/pod-identity-webhook/pod-identity-webhook/test/bench/reviews"
)

type options struct {
	url         string
	http1       bool
	insecure    bool
	ca          string
	review      string
	size        string
	vary        bool
	namespace   string
	concurrency int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	maxInflight int
	timeout     time.Duration
	wait        time.Duration
	serverPID   int
	checkPatch  string
	checkEvery  int
	json        bool
	label       string
	printPod    bool
	jsonOut     string
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "https://127.0.0.1:8443/mutate", "The webhook's /mutate URL (https)")
	flag.BoolVar(&o.http1, "http1", false, "Use HTTP/1.1 (default: HTTP/2, as the API server)")
	flag.BoolVar(&o.insecure, "insecure", false, "Do not verify the server certificate")
	flag.StringVar(&o.ca, "ca", "", "PEM file of the CA that signed the server certificate")
	flag.StringVar(&o.review, "review", "", "AdmissionReview JSON file to send (default: benchdata's, see --size)")
	flag.StringVar(&o.size, "size", "typical", "benchdata pod: small, typical or big (when --review is not given)")
	flag.BoolVar(&o.vary, "vary", false, "Make every request a pod of a new template (defeats memoisation: cache misses)")
	flag.StringVar(&o.namespace, "namespace", "", "Replace the request's and the pod's namespace")
	flag.IntVar(&o.concurrency, "concurrency", 32, "Closed loop: requests in flight")
	flag.Float64Var(&o.rate, "rate", 0, "Open loop: requests per second (0: closed loop)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "Measured duration")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "Warm-up before the measured window (same load, not counted)")
	flag.IntVar(&o.maxInflight, "max-inflight", 1000, "Open loop: bound on outstanding requests")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "Per-request timeout (the API server's default webhook timeout)")
	flag.DurationVar(&o.wait, "wait", 0, "Wait up to this long for the server's /readyz before starting")
	flag.IntVar(&o.serverPID, "server-pid", 0, "Server process: report its CPU per request (from /proc/PID/stat)")
	flag.StringVar(&o.checkPatch, "check-patch", "", "JSON Patch file (e.g. eval -o patch) every response must carry; [] means none")
	flag.IntVar(&o.checkEvery, "check-every", 1, "With --check-patch, compare 1 in N responses")
	flag.BoolVar(&o.json, "json", false, "Print the report as JSON")
	flag.StringVar(&o.jsonOut, "json-out", "", "Also write the report as JSON to this file")
	flag.StringVar(&o.label, "label", "", "A name for this run, printed in the report")
	flag.BoolVar(&o.printPod, "print-pod", false, "Print the pod of the first request (for `eval --pod`) and exit")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.concurrency < 1 && o.rate <= 0 {
		return errors.New("--concurrency must be at least 1, or give --rate")
	}
	if o.checkEvery < 1 {
		o.checkEvery = 1
	}
	u, err := url.Parse(o.url)
	if err != nil || u.Scheme != "https" {
		return fmt.Errorf("--url: an https URL is required, got %q", o.url)
	}
	tpl, err := template(o)
	if err != nil {
		return err
	}
	if o.printPod {
		pod, err := firstPod(o)
		if err != nil {
			return err
		}
		_, err = fmt.Printf("%s\n", pod)
		return err
	}
	var want *patchCheck
	if o.checkPatch != "" {
		raw, err := os.ReadFile(o.checkPatch)
		if err != nil {
			return err
		}
		pod, err := firstPod(o)
		if err != nil {
			return err
		}
		if want, err = newPatchCheck(pod, raw); err != nil {
			return fmt.Errorf("--check-patch: %v", err)
		}
	}
	client, err := newClient(o)
	if err != nil {
		return err
	}
	if o.wait > 0 {
		if err := waitHealthy(client, u, o.wait); err != nil {
			return err
		}
	}
	l := &loader{o: o, client: client, tpl: tpl, want: want, checking: want != nil}
	rep := l.run()
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.print(os.Stdout)
	return nil
}

// template builds the body template from the flags.
func template(o options) (*reviews.Template, error) {
	var body []byte
	if o.review != "" {
		b, err := os.ReadFile(o.review)
		if err != nil {
			return nil, err
		}
		body = b
	} else {
		size := benchdata.Size(o.size)
		ok := false
		for _, s := range benchdata.Sizes {
			ok = ok || s == size
		}
		if !ok {
			return nil, fmt.Errorf("--size: small, typical or big, got %q", o.size)
		}
		body = benchdata.Review(size)
	}
	return reviews.Prepare(body, reviews.Options{Namespace: o.namespace, Vary: o.vary})
}

func newClient(o options) (*http.Client, error) {
	tc := &tls.Config{InsecureSkipVerify: o.insecure} //nolint:gosec // a flag, for throwaway certificates
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate", o.ca)
		}
		tc.RootCAs = pool
	}
	conns := max(o.concurrency, 1)
	if o.rate > 0 {
		conns = o.maxInflight
	}
	tr := &http.Transport{
		TLSClientConfig:     tc,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	var p http.Protocols
	if o.http1 {
		p.SetHTTP1(true)
	} else {
		p.SetHTTP2(true)
	}
	tr.Protocols = &p
	return &http.Client{Transport: tr, Timeout: o.timeout}, nil
}

func waitHealthy(c *http.Client, u *url.URL, wait time.Duration) error {
	h := *u
	h.Path, h.RawQuery = "/readyz", ""
	deadline := time.Now().Add(wait)
	for {
		resp, err := c.Get(h.String())
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not healthy at %s after %s: %v", h.String(), wait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// decodePatch reads a JSON Patch for comparison; null, [] and an empty file mean no
// patch.
// firstPod is the pod of the first request, the one `eval --pod` is given.
func firstPod(o options) ([]byte, error) {
	tpl, err := template(o)
	if err != nil {
		return nil, err
	}
	tpl.SetUID(1)
	if o.vary {
		tpl.SetTemplate(1)
	}
	var review struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(tpl.Body, &review); err != nil {
		return nil, err
	}
	return review.Request.Object, nil
}

// patchCheck says whether a response's patch does what the expected patch does: the
// same pod when applied to the first request's pod (the patch does not depend on
// the template that varies). Equal pods, not equal bytes: the engine and the
// plain-Go reference may order independent operations differently.
type patchCheck struct {
	pod  []byte
	want any // the first pod with the expected patch applied, decoded

	// verified holds the patches that passed, by their bytes: a patch already seen
	// passes without applying it again (applying one costs the load generator a few
	// hundred microseconds, which capped the hit rate it could measure).
	mu       sync.Mutex
	verified map[string]bool
}

func newPatchCheck(pod, wantPatch []byte) (*patchCheck, error) {
	want, err := applyPatch(pod, wantPatch)
	if err != nil {
		return nil, err
	}
	return &patchCheck{pod: pod, want: want}, nil
}

func (c *patchCheck) check(patch []byte) error {
	c.mu.Lock()
	seen := c.verified[string(patch)]
	c.mu.Unlock()
	if seen {
		return nil
	}
	got, err := applyPatch(c.pod, patch)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(got, c.want) {
		return errors.New("the patched pod differs from the expected one")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.verified == nil || len(c.verified) >= 1024 {
		c.verified = map[string]bool{}
	}
	c.verified[string(patch)] = true
	return nil
}

// applyPatch applies a JSON Patch ("" or [] for none) to pod and decodes the result.
func applyPatch(pod, patch []byte) (any, error) {
	if p := bytes.TrimSpace(patch); len(p) > 0 && string(p) != "[]" && string(p) != "null" {
		ops, err := jsonpatch.DecodePatch(p)
		if err != nil {
			return nil, fmt.Errorf("not a JSON Patch: %v", err)
		}
		if pod, err = ops.Apply(pod); err != nil {
			return nil, fmt.Errorf("the patch does not apply: %v", err)
		}
	}
	var v any
	if err := json.Unmarshal(pod, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// loader runs one load test.
type loader struct {
	o        options
	client   *http.Client
	tpl      *reviews.Template
	want     *patchCheck
	checking bool

	seq atomic.Uint64 // request numbers

	mu             sync.Mutex
	windowStart    time.Time
	windowEnd      time.Time
	latencies      []time.Duration // OK requests sent within the window
	sent           int             // requests sent within the window
	completed      int             // responses (of any kind) received within the window
	ok             int
	mutated        int
	errors         map[string]int
	protocols      map[string]int
	checked        int
	inflight       int
	maxInflight    int
	limitHits      int
	maxLag         time.Duration // open loop: how late the scheduler sent
	firstErrSample map[string]string
}

// result is one request's outcome.
type result struct {
	kind     string // "" for OK
	detail   string
	proto    string
	mutated  bool
	checked  bool
	start    time.Time // scheduled (open loop) or actual (closed loop) send time
	end      time.Time
	inWindow bool
}

// body returns a fresh copy of the template for request n (the transport may still read
// a body after the response, so bodies are not reused).
func (l *loader) body(n uint64) []byte {
	l.mu.Lock()
	l.tpl.SetUID(n)
	if l.o.vary {
		l.tpl.SetTemplate(n)
	}
	b := bytes.Clone(l.tpl.Body)
	l.mu.Unlock()
	return b
}

// do sends request n and classifies the answer.
func (l *loader) do(n uint64) result {
	var r result
	a := reviewclient.Post(context.Background(), l.client, l.o.url, l.body(n))
	r.kind, r.detail, r.proto = a.Kind, a.Detail, a.Proto
	switch {
	case a.Kind != "":
		return r
	case !a.Allowed:
		r.kind, r.detail = "not-allowed", a.Message
		return r
	case !strings.HasSuffix(a.UID, reviews.UIDSuffix(n)):
		r.kind, r.detail = "uid-mismatch", fmt.Sprintf("got %q, want suffix %s", a.UID, reviews.UIDSuffix(n))
		return r
	}
	r.mutated = len(a.Patch) > 0
	if l.checking && n%uint64(l.o.checkEvery) == 0 {
		r.checked = true
		if err := l.want.check(a.Patch); err != nil {
			r.kind, r.detail = "patch-mismatch", fmt.Sprintf("%v: %.300s", err, a.Patch)
		}
	}
	return r
}

func (l *loader) record(r result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !r.end.Before(l.windowStart) && !r.end.After(l.windowEnd) {
		l.completed++
	}
	if !r.inWindow {
		return
	}
	l.sent++
	if r.proto != "" {
		l.protocols[r.proto]++
	}
	if r.checked {
		l.checked++
	}
	if r.kind != "" {
		l.errors[r.kind]++
		if _, ok := l.firstErrSample[r.kind]; !ok {
			l.firstErrSample[r.kind] = r.detail
		}
		return
	}
	l.ok++
	if r.mutated {
		l.mutated++
	}
	l.latencies = append(l.latencies, r.end.Sub(r.start))
}

func (l *loader) run() *report {
	l.errors, l.protocols, l.firstErrSample = map[string]int{}, map[string]int{}, map[string]string{}
	start := time.Now()
	l.windowStart = start.Add(l.o.warmup)
	l.windowEnd = l.windowStart.Add(l.o.duration)

	// CPU snapshots at the window's edges.
	var before, after cpuSnapshot
	snaps := make(chan struct{})
	go func() {
		defer close(snaps)
		time.Sleep(time.Until(l.windowStart))
		before = snapshot(l.o.serverPID)
		time.Sleep(time.Until(l.windowEnd))
		after = snapshot(l.o.serverPID)
	}()

	if l.o.rate > 0 {
		l.openLoop(start)
	} else {
		l.closedLoop()
	}
	<-snaps
	return l.report(before, after)
}

func (l *loader) closedLoop() {
	var wg sync.WaitGroup
	for range l.o.concurrency {
		wg.Go(func() {
			for {
				now := time.Now()
				if !now.Before(l.windowEnd) {
					return
				}
				r := l.do(l.seq.Add(1))
				r.start, r.end = now, time.Now()
				r.inWindow = !now.Before(l.windowStart)
				l.record(r)
			}
		})
	}
	wg.Wait()
}

func (l *loader) openLoop(start time.Time) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, l.o.maxInflight)
	interval := float64(time.Second) / l.o.rate
	for k := 0; ; k++ {
		sched := start.Add(time.Duration(float64(k) * interval))
		if !sched.Before(l.windowEnd) {
			break
		}
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		select {
		case slots <- struct{}{}:
		default:
			l.mu.Lock()
			l.limitHits++
			l.mu.Unlock()
			slots <- struct{}{}
		}
		lag := time.Since(sched)
		l.mu.Lock()
		l.inflight++
		l.maxInflight = max(l.maxInflight, l.inflight)
		if !sched.Before(l.windowStart) {
			l.maxLag = max(l.maxLag, lag)
		}
		l.mu.Unlock()
		n := l.seq.Add(1)
		wg.Go(func() {
			defer func() {
				<-slots
				l.mu.Lock()
				l.inflight--
				l.mu.Unlock()
			}()
			r := l.do(n)
			r.start, r.end = sched, time.Now()
			r.inWindow = !sched.Before(l.windowStart)
			l.record(r)
		})
	}
	wg.Wait()
}

// cpuSnapshot is what /proc says at one instant.
type cpuSnapshot struct {
	at          time.Time
	serverTicks int64 // utime+stime of the server, -1 if unknown
	selfTicks   int64 // utime+stime of this process
	busyTicks   int64 // the machine's non-idle time, all CPUs
	ok          bool
}

// clockTicks is USER_HZ, 100 on every Linux the project runs on.
const clockTicks = 100

func snapshot(pid int) cpuSnapshot {
	s := cpuSnapshot{at: time.Now(), serverTicks: -1}
	var err error
	if pid > 0 {
		if s.serverTicks, err = procTicks(strconv.Itoa(pid)); err != nil {
			s.serverTicks = -1
		}
	}
	if s.selfTicks, err = procTicks("self"); err != nil {
		return s
	}
	if s.busyTicks, err = machineBusy(); err != nil {
		return s
	}
	s.ok = true
	return s
}

// procTicks reads utime+stime from /proc/<pid>/stat.
func procTicks(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return ut + st, nil
}

// machineBusy is the non-idle time of all CPUs from /proc/stat: user, nice, system,
// irq, softirq and steal (guest time is part of user).
func machineBusy() (int64, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 9 || fields[0] != "cpu" {
			continue
		}
		var busy int64
		for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
			v, err := strconv.ParseInt(fields[i], 10, 64)
			if err != nil {
				return 0, err
			}
			busy += v
		}
		return busy, nil
	}
	return 0, errors.New("/proc/stat: no cpu line")
}

// report is the outcome of a run.
type report struct {
	Label       string         `json:"label,omitempty"`
	URL         string         `json:"url"`
	Mode        string         `json:"mode"` // closed or open
	Concurrency int            `json:"concurrency,omitempty"`
	Rate        float64        `json:"rate,omitempty"`
	Body        string         `json:"body"`
	BodyBytes   int            `json:"bodyBytes"`
	Vary        bool           `json:"vary"`
	Duration    float64        `json:"durationSeconds"`
	Warmup      float64        `json:"warmupSeconds"`
	Protocols   map[string]int `json:"protocols"`

	Requests   int               `json:"requests"`  // sent within the window
	Completed  int               `json:"completed"` // answered within the window
	OK         int               `json:"ok"`
	Mutated    int               `json:"mutated"`
	ErrorCount int               `json:"errorCount"`
	Errors     map[string]int    `json:"errors"`
	ErrorHints map[string]string `json:"errorSamples,omitempty"`
	PerSecond  float64           `json:"requestsPerSecond"`
	Checked    int               `json:"patchesChecked,omitempty"`

	LatencyMs reviewclient.Latencies `json:"latencyMs"`

	MaxInflight       int     `json:"maxInflight,omitempty"`
	InflightLimit     int     `json:"inflightLimit,omitempty"`
	InflightLimitHits int     `json:"inflightLimitHits,omitempty"`
	MaxSchedulerLagMs float64 `json:"maxSchedulerLagMs,omitempty"`

	ServerCores      *float64 `json:"serverCores,omitempty"`
	ServerCPUPerReqU *float64 `json:"serverCpuPerRequestMicros,omitempty"`
	LoadCores        *float64 `json:"loadGeneratorCores,omitempty"`
	OtherCores       *float64 `json:"otherCores,omitempty"`
	LoadAvg          string   `json:"loadavg"`
	CPUs             int      `json:"cpus"`
}

func (l *loader) report(before, after cpuSnapshot) *report {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &report{
		Label: l.o.label, URL: l.o.url, Mode: "closed", Concurrency: l.o.concurrency,
		BodyBytes: len(l.tpl.Body), Vary: l.o.vary, Duration: l.o.duration.Seconds(), Warmup: l.o.warmup.Seconds(),
		Protocols: l.protocols, Requests: l.sent, Completed: l.completed, OK: l.ok, Mutated: l.mutated,
		Errors: l.errors, Checked: l.checked, LoadAvg: loadavg(), CPUs: machineCPUs(),
	}
	r.Body = "benchdata " + l.o.size
	if l.o.review != "" {
		r.Body = l.o.review
	}
	if l.o.namespace != "" {
		r.Body += " in namespace " + l.o.namespace
	}
	if l.o.rate > 0 {
		r.Mode, r.Concurrency, r.Rate = "open", 0, l.o.rate
		r.MaxInflight, r.InflightLimit, r.InflightLimitHits = l.maxInflight, l.o.maxInflight, l.limitHits
		r.MaxSchedulerLagMs = reviewclient.Ms(l.maxLag)
	}
	for _, n := range l.errors {
		r.ErrorCount += n
	}
	if len(l.firstErrSample) > 0 {
		r.ErrorHints = l.firstErrSample
	}
	r.PerSecond = float64(l.completed) / l.o.duration.Seconds()
	r.LatencyMs = reviewclient.Summarize(l.latencies)

	if before.ok && after.ok {
		wall := after.at.Sub(before.at).Seconds()
		cores := func(ticks int64) *float64 {
			v := float64(ticks) / clockTicks / wall
			return &v
		}
		r.LoadCores = cores(after.selfTicks - before.selfTicks)
		other := after.busyTicks - before.busyTicks - (after.selfTicks - before.selfTicks)
		if before.serverTicks >= 0 && after.serverTicks >= 0 {
			st := after.serverTicks - before.serverTicks
			r.ServerCores = cores(st)
			other -= st
			if l.completed > 0 {
				per := float64(st) / clockTicks / float64(l.completed) * 1e6
				r.ServerCPUPerReqU = &per
			}
		}
		r.OtherCores = cores(max(other, 0))
	}
	return r
}

func (r *report) print(w io.Writer) {
	if r.Label != "" {
		fmt.Fprintf(w, "== %s\n", r.Label)
	}
	load := fmt.Sprintf("closed loop, concurrency %d", r.Concurrency)
	if r.Mode == "open" {
		load = fmt.Sprintf("open loop, %.0f req/s", r.Rate)
	}
	var protos []string
	for p, n := range r.Protocols {
		protos = append(protos, fmt.Sprintf("%s×%d", p, n))
	}
	sort.Strings(protos)
	vary := "same pod (hits)"
	if r.Vary {
		vary = "new template per request (misses)"
	}
	fmt.Fprintf(w, "%s %s; %s, %d bytes, %s; %.0fs after %.0fs warm-up\n", r.URL, strings.Join(protos, " "), load, r.BodyBytes, vary, r.Duration, r.Warmup)
	fmt.Fprintf(w, "  requests %d (answered in window %d), ok %d (mutated %d), errors %d", r.Requests, r.Completed, r.OK, r.Mutated, r.ErrorCount)
	if r.Checked > 0 {
		fmt.Fprintf(w, ", patches checked %d", r.Checked)
	}
	fmt.Fprintln(w)
	if r.ErrorCount > 0 {
		var kinds []string
		for k := range r.Errors {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			fmt.Fprintf(w, "    %-20s %d  e.g. %.160s\n", k, r.Errors[k], r.ErrorHints[k])
		}
	}
	l := r.LatencyMs
	fmt.Fprintf(w, "  %.0f req/s; latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p999 %.2f  max %.2f  (mean %.2f)\n",
		r.PerSecond, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	if r.Mode == "open" {
		fmt.Fprintf(w, "  in flight: max %d of %d allowed", r.MaxInflight, r.InflightLimit)
		if r.InflightLimitHits > 0 {
			fmt.Fprintf(w, ", LIMIT REACHED %d times (the waits are in the latencies)", r.InflightLimitHits)
		}
		fmt.Fprintf(w, "; scheduler max lag %.2f ms\n", r.MaxSchedulerLagMs)
	}
	cpu := "  cpu:"
	if r.ServerCores != nil {
		cpu += fmt.Sprintf(" server %.2f cores", *r.ServerCores)
		if r.ServerCPUPerReqU != nil {
			cpu += fmt.Sprintf(", %.0f µs/request;", *r.ServerCPUPerReqU)
		}
	}
	if r.LoadCores != nil {
		cpu += fmt.Sprintf(" load generator %.2f cores; other %.2f cores;", *r.LoadCores, *r.OtherCores)
	}
	fmt.Fprintf(w, "%s load average %s (%d CPUs)\n", cpu, r.LoadAvg, r.CPUs)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// machineCPUs counts the machine's CPUs (runtime.NumCPU only sees the affinity mask).
func machineCPUs() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "cpu") && len(line) > 3 && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return max(n, 1)
}
