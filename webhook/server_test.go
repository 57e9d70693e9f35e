package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// testCert is a self-signed serving certificate for 127.0.0.1.
type testCert struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
}

func newTestCert(t *testing.T, serial int64) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "pod-identity-webhook test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		cert:    cert,
	}
}

func (c testCert) write(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certPath, c.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, c.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// testServer is a running Server with clients for both ports.
type testServer struct {
	*Server
	cert    testCert
	dir     string
	metrics *metrics.Metrics
	cancel  context.CancelFunc
	done    chan error
	client  *http.Client // trusts cert, HTTP/2
	webhook string       // https://127.0.0.1:port
	plain   string       // http://127.0.0.1:port
}

// startServer runs a Server on 127.0.0.1 with free ports; set fills in options.
func startServer(t *testing.T, set func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{cert: newTestCert(t, 1), dir: t.TempDir(), metrics: metrics.New(), done: make(chan error, 1)}
	certPath, keyPath := ts.cert.write(t, ts.dir)
	opts := Options{
		Host: "127.0.0.1", TLSCert: certPath, TLSKey: keyPath, Metrics: ts.metrics,
		Admitter: answer(mutated(), nil), ShutdownGracePeriod: 5 * time.Second,
	}
	if set != nil {
		set(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = srv
	var ctx context.Context
	ctx, ts.cancel = context.WithCancel(context.Background())
	go func() { ts.done <- srv.Run(ctx) }()
	select {
	case <-srv.Started():
	case err := <-ts.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	wa, ma := srv.Addrs()
	ts.webhook, ts.plain = "https://"+wa.String(), "http://"+ma.String()
	pool := x509.NewCertPool()
	pool.AddCert(ts.cert.cert)
	ts.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
	}}
	t.Cleanup(func() {
		ts.client.CloseIdleConnections()
		ts.cancel()
		select {
		case <-ts.done:
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	})
	return ts
}

// stop cancels the server and returns Run's result.
func (ts *testServer) stop(t *testing.T) error {
	t.Helper()
	ts.client.CloseIdleConnections()
	ts.cancel()
	select {
	case err := <-ts.done:
		ts.done <- err // for the cleanup
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop")
		return nil
	}
}

type result struct {
	code        int
	contentType string
	body        string
	proto       string
}

func do(t *testing.T, c *http.Client, method, url, contentType, body string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header.Get("Content-Type"), string(b), resp.Proto}
}

func (ts *testServer) mutate(t *testing.T, body string) result {
	t.Helper()
	return do(t, ts.client, http.MethodPost, ts.webhook+"/mutate", "application/json", body)
}

func TestServerRoundTrip(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		apiVersion string
		uid        string
	}{
		{"admission.k8s.io/v1", "uid-v1"},
		{"admission.k8s.io/v1beta1", "uid-v1beta1"},
	}
	for _, tt := range tests {
		t.Run(tt.apiVersion, func(t *testing.T) {
			got := ts.mutate(t, review(tt.apiVersion, "AdmissionReview", tt.uid, testPod))
			want := `{"kind":"AdmissionReview","apiVersion":"` + tt.apiVersion + `","response":{"uid":"` + tt.uid +
				`","allowed":true,"patch":"` + base64.StdEncoding.EncodeToString([]byte(testPatch)) + `","patchType":"JSONPatch"}}`
			if got.code != 200 || got.body != want || got.contentType != "application/json" {
				t.Errorf("got %d %s %s\nwant 200 application/json %s", got.code, got.contentType, got.body, want)
			}
			if got.proto != "HTTP/2.0" {
				t.Errorf("protocol = %s, want HTTP/2.0", got.proto)
			}
		})
	}

	if got := do(t, ts.client, http.MethodPost, ts.webhook+"/mutate/", "application/json", "{}"); got.code != 404 {
		t.Errorf("/mutate/ = %d, want 404 (exact path)", got.code)
	}

	// Both admissions show on /metrics, with upstream's names and labels.
	m := do(t, http.DefaultClient, http.MethodGet, ts.plain+"/metrics", "", "")
	if m.code != 200 {
		t.Fatalf("/metrics = %d", m.code)
	}
	for _, line := range []string{
		`http_request_count{code="200",path="/mutate",verb="POST"} 2`,
		`http_request_latencies_count{path="/mutate",verb="POST"} 2`,
		`http_request_duration_microseconds_count{path="/mutate",verb="POST"} 2`,
		`pod_identity_webhook_pod_count{method="sts_web_identity"} 2`,
		`pod_identity_webhook_admissions_total{reason="policies-applied",result="mutated"} 2`,
		`pod_identity_webhook_admission_duration_seconds_count{result="mutated"} 2`,
		`pod_identity_webhook_policy_evaluation_duration_seconds_count{bundle="default",policy="web-identity"} 2`,
		`pod_identity_webhook_policy_evaluation_duration_seconds_count{bundle="default",policy="container-credentials"} 2`,
	} {
		if !strings.Contains(m.body, "\n"+line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	// The 404 on /mutate/ is not a route, so it is not counted.
	if strings.Contains(m.body, `path="/mutate/"`) {
		t.Error("/metrics counts /mutate/")
	}
	if strings.Contains(m.body, `pod_identity_webhook_pod_count{method="container_credentials"}`) {
		t.Error("container_credentials counted although the policy did not match")
	}
}

func TestServerReadiness(t *testing.T) {
	var ready atomic.Bool
	ts := startServer(t, func(o *Options) {
		o.Ready = func() error {
			if !ready.Load() {
				return errors.New("ServiceAccount cache not synced")
			}
			return nil
		}
	})
	plain := http.DefaultClient
	check := func(name string, got result, code int, body string) {
		t.Helper()
		if got.code != code || got.body != body {
			t.Errorf("%s = %d %q, want %d %q", name, got.code, got.body, code, body)
		}
	}

	check("/mutate before ready", ts.mutate(t, review("admission.k8s.io/v1", "AdmissionReview", "u", testPod)),
		503, "not ready: ServiceAccount cache not synced\n")
	for _, base := range []struct {
		c   *http.Client
		url string
	}{{ts.client, ts.webhook}, {plain, ts.plain}} {
		check(base.url+"/readyz before ready", do(t, base.c, http.MethodGet, base.url+"/readyz", "", ""), 503, "not ready: ServiceAccount cache not synced")
		check(base.url+"/healthz before ready", do(t, base.c, http.MethodGet, base.url+"/healthz", "", ""), 200, "ok")
	}

	ready.Store(true)
	for _, base := range []struct {
		c   *http.Client
		url string
	}{{ts.client, ts.webhook}, {plain, ts.plain}} {
		check(base.url+"/readyz after ready", do(t, base.c, http.MethodGet, base.url+"/readyz", "", ""), 200, "ok")
	}
	if got := ts.mutate(t, review("admission.k8s.io/v1", "AdmissionReview", "u", testPod)); got.code != 200 {
		t.Errorf("/mutate after ready = %d %s", got.code, got.body)
	}
	labels := map[string]string{"result": "error", "reason": "not-ready"}
	if got := metricValue(t, ts.metrics.Registry, "pod_identity_webhook_admissions_total", labels); got != 1 {
		t.Errorf("admissions_total{error,not-ready} = %v, want 1", got)
	}
	if got := metricValue(t, ts.metrics.Registry, "http_request_count", map[string]string{"verb": "POST", "path": "/mutate", "code": "503"}); got != 1 {
		t.Errorf("http_request_count{POST,/mutate,503} = %v, want 1", got)
	}
}

// servedSerial does a TLS handshake and returns the serial of the certificate served.
func servedSerial(addr string) (int64, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the certificate
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func TestServerCertReload(t *testing.T) {
	ts := startServer(t, nil)
	addr := strings.TrimPrefix(ts.webhook, "https://")
	if serial, err := servedSerial(addr); err != nil || serial != 1 {
		t.Fatalf("serial before the swap = %d, %v; want 1", serial, err)
	}
	// Overwrite the files in place, the certificate first: in between the pair does
	// not match, and the old one must go on being served.
	newTestCert(t, 2).write(t, ts.dir)
	deadline := time.Now().Add(5 * time.Second) // well under the 10 s poll: fsnotify
	for {
		serial, err := servedSerial(addr)
		if err != nil {
			t.Fatalf("handshake during the swap: %v", err)
		}
		if serial == 2 {
			break
		}
		if serial != 1 {
			t.Fatalf("served serial %d, want 1 or 2", serial)
		}
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not served within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A broken pair keeps the last good one.
	if err := os.WriteFile(filepath.Join(ts.dir, "tls.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if serial, err := servedSerial(addr); err != nil || serial != 2 {
		t.Fatalf("serial after a broken write = %d, %v; want 2", serial, err)
	}
}

// blockingAdmitter blocks in Admit until released.
func blockingAdmitter(entered chan<- struct{}, release <-chan struct{}) *fakeAdmitter {
	return &fakeAdmitter{decide: func(context.Context, engine.Attributes, []byte) (*admission.Decision, error) {
		entered <- struct{}{}
		<-release
		return &admission.Decision{Allowed: true}, nil
	}}
}

func TestServerGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}, 2), make(chan struct{})
	const delay = 500 * time.Millisecond
	ts := startServer(t, func(o *Options) {
		o.Admitter = blockingAdmitter(entered, release)
		o.ShutdownDelay = delay
		o.ShutdownGracePeriod = 10 * time.Second
	})
	slow := make(chan result, 1)
	go func() { slow <- ts.mutate(t, review("admission.k8s.io/v1", "AdmissionReview", "in-flight", testPod)) }()
	<-entered

	ts.cancel()
	stopped := time.Now()
	// During the delay /readyz fails at once on both ports, while /mutate still serves.
	time.Sleep(50 * time.Millisecond)
	if got := do(t, http.DefaultClient, http.MethodGet, ts.plain+"/readyz", "", ""); got.code != 503 || got.body != "not ready: shutting down" {
		t.Errorf("metrics /readyz during the delay = %d %q, want 503", got.code, got.body)
	}
	if got := do(t, ts.client, http.MethodGet, ts.webhook+"/readyz", "", ""); got.code != 503 || got.body != "not ready: shutting down" {
		t.Errorf("webhook /readyz during the delay = %d %q, want 503", got.code, got.body)
	}
	during := make(chan result, 1)
	go func() {
		during <- ts.mutate(t, review("admission.k8s.io/v1", "AdmissionReview", "during-delay", testPod))
	}()
	<-entered
	if time.Since(stopped) >= delay {
		t.Fatal("test too slow: the delay was over before the checks")
	}

	// After the delay the server stops accepting but waits for the two requests.
	time.Sleep(delay)
	select {
	case err := <-ts.done:
		t.Fatalf("Run returned with requests in flight: %v", err)
	default:
	}
	for _, addr := range []string{strings.TrimPrefix(ts.webhook, "https://"), strings.TrimPrefix(ts.plain, "http://")} {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after the delay", addr)
		}
	}
	close(release)
	for name, ch := range map[string]chan result{"in-flight": slow, "during-delay": during} {
		got := <-ch
		want := `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"` + name + `","allowed":true}}`
		if got.code != 200 || got.body != want {
			t.Errorf("%s request = %d %s, want 200 %s", name, got.code, got.body, want)
		}
	}
	if err := ts.stop(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestServerShutdownGracePeriodExpires(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	ts := startServer(t, func(o *Options) {
		o.Admitter = blockingAdmitter(entered, release)
		o.ShutdownGracePeriod = 100 * time.Millisecond
	})
	go func() {
		resp, err := ts.client.Post(ts.webhook+"/mutate", "application/json", strings.NewReader(review("", "", "u", testPod)))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	err := ts.stop(t)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "webhook server: shutdown") {
		t.Errorf("Run = %v, want the webhook server's shutdown deadline error", err)
	}
}

func TestServerDebugHandlers(t *testing.T) {
	dbg := &fakeDebug{dump: map[string]any{"team/sa": map[string]string{"RoleARN": "arn:aws:iam::1:role/r"}}}
	ts := startServer(t, func(o *Options) {
		o.EnableDebuggingHandlers = true
		o.Debug = dbg
	})
	tests := []struct {
		name        string
		c           *http.Client
		url, body   string
		wantCode    int
		wantBody    string
		wantCleared int
	}{
		{"cache", http.DefaultClient, ts.plain + "/debug/alpha/cache", "", 200,
			"{\n  \"team/sa\": {\n    \"RoleARN\": \"arn:aws:iam::1:role/r\"\n  }\n}", 0},
		{"clear", http.DefaultClient, ts.plain + "/debug/alpha/cache/clear", "", 200, "", 1},
		{"deny without a review", ts.client, ts.webhook + "/debug/alpha/deny", "", 200,
			`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"","allowed":false,"status":{"metadata":{},"message":"Test deny message","reason":"Forbidden","code":403}}}`, 1},
		{"deny echoes a review", ts.client, ts.webhook + "/debug/alpha/deny", review("admission.k8s.io/v1beta1", "AdmissionReview", "d", testPod), 200,
			`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","response":{"uid":"d","allowed":false,"status":{"metadata":{},"message":"Test deny message","reason":"Forbidden","code":403}}}`, 1},
		{"500", ts.client, ts.webhook + "/debug/alpha/500", "", 500, "test error\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, tt.c, http.MethodPost, tt.url, "application/json", tt.body)
			if got.code != tt.wantCode || got.body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", got.code, got.body, tt.wantCode, tt.wantBody)
			}
			if dbg.cleared.Load() != int32(tt.wantCleared) {
				t.Errorf("cleared %d times, want %d", dbg.cleared.Load(), tt.wantCleared)
			}
		})
	}
	for _, l := range []map[string]string{
		{"verb": "POST", "path": "/debug/alpha/deny", "code": "200"},
		{"verb": "POST", "path": "/debug/alpha/500", "code": "500"},
	} {
		want := 1.0
		if l["path"] == "/debug/alpha/deny" {
			want = 2
		}
		if got := metricValue(t, ts.metrics.Registry, "http_request_count", l); got != want {
			t.Errorf("http_request_count%v = %v, want %v", l, got, want)
		}
	}
}

func TestServerDebugHandlersOff(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Debug = &fakeDebug{} })
	for _, url := range []string{ts.plain + "/debug/alpha/cache", ts.plain + "/debug/alpha/cache/clear"} {
		if got := do(t, http.DefaultClient, http.MethodGet, url, "", ""); got.code != 404 {
			t.Errorf("%s = %d, want 404", url, got.code)
		}
	}
	for _, url := range []string{ts.webhook + "/debug/alpha/deny", ts.webhook + "/debug/alpha/500"} {
		if got := do(t, ts.client, http.MethodGet, url, "", ""); got.code != 404 {
			t.Errorf("%s = %d, want 404", url, got.code)
		}
	}
}

type fakeDebug struct {
	dump    any
	cleared atomic.Int32
}

func (f *fakeDebug) Dump() any { return f.dump }
func (f *fakeDebug) Clear()    { f.cleared.Add(1) }

func TestServerRecoversPanics(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.Admitter = &fakeAdmitter{decide: func(context.Context, engine.Attributes, []byte) (*admission.Decision, error) {
			panic("policy bug")
		}}
	})
	got := ts.mutate(t, review("admission.k8s.io/v1", "AdmissionReview", "u", testPod))
	if got.code != 500 || got.body != "internal error\n" {
		t.Errorf("got %d %q, want 500 \"internal error\\n\"", got.code, got.body)
	}
	// The server goes on serving.
	if got := do(t, ts.client, http.MethodGet, ts.webhook+"/healthz", "", ""); got.code != 200 {
		t.Errorf("/healthz after a panic = %d", got.code)
	}
	if got := metricValue(t, ts.metrics.Registry, "pod_identity_webhook_admissions_total", map[string]string{"result": "error", "reason": "internal-error"}); got != 1 {
		t.Errorf("admissions_total{error,internal-error} = %v, want 1", got)
	}
	if got := metricValue(t, ts.metrics.Registry, "http_request_count", map[string]string{"verb": "POST", "path": "/mutate", "code": "500"}); got != 1 {
		t.Errorf("http_request_count{POST,/mutate,500} = %v, want 1", got)
	}
}

func TestNewFails(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := newTestCert(t, 1).write(t, dir)
	other := newTestCert(t, 2)
	mismatched := filepath.Join(dir, "other.key")
	if err := os.WriteFile(mismatched, other.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	adm := answer(nil, nil)
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no admitter", Options{TLSCert: certPath, TLSKey: keyPath}, "webhook: an Admitter is required"},
		{"missing cert", Options{Admitter: adm, TLSCert: filepath.Join(dir, "none.crt"), TLSKey: keyPath}, "loading the TLS key pair " + dir + "/none.crt, " + keyPath + ": open " + dir + "/none.crt: no such file or directory"},
		{"missing key", Options{Admitter: adm, TLSCert: certPath, TLSKey: filepath.Join(dir, "none.key")}, "loading the TLS key pair " + certPath + ", " + dir + "/none.key: open " + dir + "/none.key: no such file or directory"},
		{"key of another cert", Options{Admitter: adm, TLSCert: certPath, TLSKey: mismatched}, "loading the TLS key pair " + certPath + ", " + mismatched + ": tls: private key does not match public key"},
		{"bad min version", Options{Admitter: adm, TLSCert: certPath, TLSKey: keyPath, TLSMinVersion: "1.4"}, `tls-min-version: unknown TLS version "1.4"`},
		{"bad cipher", Options{Admitter: adm, TLSCert: certPath, TLSKey: keyPath, TLSCipherSuites: "TLS_AES_128_GCM_SHA256,nope"}, `tls-cipher-suites: unknown cipher suite "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("New = %v, want an error starting with %q", err, tt.wantErr)
			}
		})
	}
}

// A port in use fails Run, and it returns without leaking the other listener.
func TestRunListenError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	certPath, keyPath := newTestCert(t, 1).write(t, dir)
	srv, err := New(Options{Host: "127.0.0.1", MetricsPort: busy.Addr().(*net.TCPAddr).Port, TLSCert: certPath, TLSKey: keyPath, Admitter: answer(nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "metrics listener: ") {
		t.Errorf("Run = %v, want a metrics listener error", err)
	}
}
