package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// Server timeouts; upstream set none, so a slow or stuck client held a connection and
// a goroutine forever. The API server gives a webhook at most 30 s, so WriteTimeout
// leaves room above that for the handler (a ServiceAccount grace wait included).
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 40 * time.Second
	// The API server keeps connections to webhooks alive between requests.
	idleTimeout = 120 * time.Second
)

// Options configure a Server; the fields mirror the serve flags.
type Options struct {
	// Host is the address both listeners bind; empty means all interfaces.
	Host string
	// Port is the TLS port of /mutate, /healthz and /readyz; 0 picks a free one.
	Port int
	// MetricsPort is the plain-HTTP port of /metrics, /healthz and /readyz; 0 picks
	// a free one.
	MetricsPort int
	// TLSCert and TLSKey are the serving pair's files, reloaded when they change.
	TLSCert, TLSKey string
	// TLSCipherSuites and TLSMinVersion are the flag values, see ParseCipherSuites
	// and ParseTLSMinVersion.
	TLSCipherSuites string
	TLSMinVersion   string
	// EnableDebuggingHandlers adds upstream's /debug/alpha routes.
	EnableDebuggingHandlers bool
	// ShutdownDelay is how long the server keeps serving, with /readyz failing, after
	// the context ends, so that endpoints drop the pod before it stops accepting.
	ShutdownDelay time.Duration
	// ShutdownGracePeriod bounds the wait for in-flight requests after that.
	ShutdownGracePeriod time.Duration
	// Ready reports whether caches and policies are ready; nil means always ready.
	// /mutate answers 503 and /readyz fails while it returns an error.
	Ready func() error
	// Admitter decides; required.
	Admitter Admitter
	// Metrics are recorded and served on /metrics; nil creates a fresh set.
	Metrics *metrics.Metrics
	// Debug backs /debug/alpha/cache and /debug/alpha/cache/clear; without it those
	// routes are not served.
	Debug Debug
}

// Server is the webhook's TLS server and its plain-HTTP metrics server.
type Server struct {
	opts    Options
	certs   *certwatcher.CertWatcher
	webhook *http.Server
	metrics *http.Server

	shuttingDown atomic.Bool
	ran          atomic.Bool
	started      chan struct{}
	addrMu       sync.Mutex
	addr         net.Addr
	metricsAddr  net.Addr
}

// New checks the options and loads the serving certificate; it fails when the
// certificate or key cannot be read or a TLS option is invalid.
func New(opts Options) (*Server, error) {
	if opts.Admitter == nil {
		return nil, errors.New("webhook: an Admitter is required")
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	minVersion, err := ParseTLSMinVersion(opts.TLSMinVersion)
	if err != nil {
		return nil, err
	}
	suites, err := ParseCipherSuites(opts.TLSCipherSuites)
	if err != nil {
		return nil, err
	}
	certs, err := newCertWatcher(opts.TLSCert, opts.TLSKey)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, certs: certs, started: make(chan struct{})}
	errorLog := log.New(klogWriter{}, "", 0)

	s.webhook = &http.Server{
		Handler:           s.webhookMux(),
		TLSConfig:         &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: minVersion, CipherSuites: suites},
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          errorLog,
	}
	if !http2Capable(minVersion, suites) {
		// Rather than fail at start as net/http would, serve HTTP/1.1 only: the API
		// server speaks both.
		klog.InfoS("HTTP/2 disabled: the TLS cipher suites include neither TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 nor TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
		var p http.Protocols
		p.SetHTTP1(true)
		s.webhook.Protocols = &p
	}
	s.metrics = &http.Server{
		Handler:           s.metricsMux(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          errorLog,
	}
	return s, nil
}

func (s *Server) webhookMux() *http.ServeMux {
	m := s.opts.Metrics
	mux := http.NewServeMux()
	// A pattern without a trailing slash matches that path only: /mutate/ is a 404.
	mux.Handle("/mutate", instrument(m, "/mutate", recoverPanics(&Handler{
		Admitter: s.opts.Admitter, Metrics: m, Ready: s.opts.Ready,
	})))
	s.addProbes(mux)
	if s.opts.EnableDebuggingHandlers {
		mux.Handle(debugDenyPath, instrument(m, debugDenyPath, recoverPanics(denyHandler())))
		mux.Handle(debug500Path, instrument(m, debug500Path, recoverPanics(errorHandler())))
	}
	return mux
}

func (s *Server) metricsMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.opts.Metrics.Registry, promhttp.HandlerOpts{}))
	s.addProbes(mux)
	if s.opts.EnableDebuggingHandlers && s.opts.Debug != nil {
		mux.Handle(debugCachePath, recoverPanics(dumpHandler(s.opts.Debug)))
		mux.Handle(debugCacheClearPath, recoverPanics(clearHandler(s.opts.Debug)))
	}
	return mux
}

// addProbes adds /healthz (the process is up) and /readyz (it should get traffic).
func (s *Server) addProbes(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// errShuttingDown is /readyz's reason once shutdown started. /mutate keeps serving
// then: the API server sends requests until the endpoints drop the pod.
var errShuttingDown = errors.New("shutting down")

func (s *Server) ready() error {
	if s.shuttingDown.Load() {
		return errShuttingDown
	}
	if s.opts.Ready != nil {
		return s.opts.Ready()
	}
	return nil
}

// Started is closed once both listeners are bound; Addrs is valid from then on.
func (s *Server) Started() <-chan struct{} { return s.started }

// Addrs returns the bound addresses of the TLS and the metrics listener, nil before
// Started is closed.
func (s *Server) Addrs() (webhook, metrics net.Addr) {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr, s.metricsAddr
}

// Run serves until ctx ends, then shuts down gracefully: /readyz fails at once, both
// servers keep serving for ShutdownDelay, then stop accepting and wait up to
// ShutdownGracePeriod for in-flight requests before closing the rest. It returns once
// both servers stopped: nil after a clean shutdown, else the first serve or shutdown
// error. It can be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("webhook: Run called twice")
	}
	wl, err := net.Listen("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port)))
	if err != nil {
		return fmt.Errorf("webhook listener: %w", err)
	}
	ml, err := net.Listen("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.MetricsPort)))
	if err != nil {
		wl.Close()
		return fmt.Errorf("metrics listener: %w", err)
	}
	certCtx, stopCerts := context.WithCancel(context.Background())
	certsDone := make(chan struct{})
	go func() {
		defer close(certsDone)
		if err := s.certs.Start(certCtx); err != nil {
			klog.ErrorS(err, "watching the TLS certificate files failed; the current certificate stays in use")
		}
	}()
	defer func() { stopCerts(); <-certsDone }()

	s.addrMu.Lock()
	s.addr, s.metricsAddr = wl.Addr(), ml.Addr()
	s.addrMu.Unlock()
	close(s.started)
	klog.InfoS("serving", "webhook", wl.Addr().String(), "metrics", ml.Addr().String())

	errc := make(chan error, 2)
	go func() { errc <- serveResult("webhook", s.webhook.ServeTLS(wl, "", "")) }()
	go func() { errc <- serveResult("metrics", s.metrics.Serve(ml)) }()
	running := 2

	var firstErr error
	select {
	case <-ctx.Done():
		s.shuttingDown.Store(true)
		klog.InfoS("shutting down: /readyz now fails, still serving", "delay", s.opts.ShutdownDelay)
		select {
		case <-time.After(s.opts.ShutdownDelay):
		case firstErr = <-errc:
			running--
		}
	case firstErr = <-errc:
		// One server failed: stop the other too.
		s.shuttingDown.Store(true)
		running--
	}

	if err := s.shutdown(); err != nil && firstErr == nil {
		firstErr = err
	}
	for ; running > 0; running-- {
		if err := <-errc; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		klog.InfoS("shut down cleanly")
	}
	return firstErr
}

// shutdown stops both servers, letting in-flight requests finish within the grace
// period and closing what is left after it.
func (s *Server) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGracePeriod)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, srv := range []struct {
		name string
		*http.Server
	}{{"webhook", s.webhook}, {"metrics", s.metrics}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				klog.ErrorS(err, "graceful shutdown incomplete; closing the remaining connections", "server", srv.name, "gracePeriod", s.opts.ShutdownGracePeriod)
				_ = srv.Close()
				errs[i] = fmt.Errorf("%s server: shutdown: %w", srv.name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func serveResult(name string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s server: %w", name, err)
}

// klogWriter sends net/http's own log lines (TLS handshake errors, mostly from TCP
// probes and scanners) to klog at level 2, where they do not drown the admissions.
type klogWriter struct{}

func (klogWriter) Write(p []byte) (int, error) {
	klog.V(2).InfoS(strings.TrimSpace(string(p)), "source", "net/http")
	return len(p), nil
}
