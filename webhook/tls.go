package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10, "VersionTLS10": tls.VersionTLS10,
	"1.1": tls.VersionTLS11, "VersionTLS11": tls.VersionTLS11,
	"1.2": tls.VersionTLS12, "VersionTLS12": tls.VersionTLS12,
	"1.3": tls.VersionTLS13, "VersionTLS13": tls.VersionTLS13,
}

// ParseTLSMinVersion parses --tls-min-version: 1.0, 1.1, 1.2, 1.3 or VersionTLS10 to
// VersionTLS13. Empty gives 0, which leaves Go's default in place.
func ParseTLSMinVersion(s string) (uint16, error) {
	if s == "" {
		return 0, nil
	}
	if v, ok := tlsVersions[s]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("tls-min-version: unknown TLS version %q (valid: 1.0, 1.1, 1.2, 1.3, VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13)", s)
}

// ParseCipherSuites parses --tls-cipher-suites: comma-separated Go cipher suite names,
// secure or insecure (as upstream accepts), each trimmed, empty entries skipped. No
// names gives nil, which leaves Go's defaults in place.
func ParseCipherSuites(s string) ([]uint16, error) {
	known := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		known[cs.Name] = cs.ID
	}
	for _, cs := range tls.InsecureCipherSuites() {
		known[cs.Name] = cs.ID
	}
	var ids []uint16
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		id, ok := known[name]
		if !ok {
			return nil, fmt.Errorf("tls-cipher-suites: unknown cipher suite %q (names as in Go's crypto/tls, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)", name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// http2Capable reports whether net/http can serve HTTP/2 with these suites: with TLS
// 1.0-1.2 allowed and a suite list given, it insists on one of the two suites HTTP/2
// requires, and ServeTLS would fail outright without them.
func http2Capable(minVersion uint16, suites []uint16) bool {
	if suites == nil || minVersion >= tls.VersionTLS13 {
		return true
	}
	for _, id := range suites {
		if id == tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 || id == tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
			return true
		}
	}
	return false
}

// certPollInterval is how often the certificate files are re-read whatever fsnotify
// says, as controller-runtime's certwatcher does: events get lost when a directory is
// replaced or a volume remounted.
var certPollInterval = 10 * time.Second

// certWatcher serves the latest good certificate and key from two files and reloads
// them when they change. It behaves as controller-runtime's certwatcher.CertWatcher
// (fail at start if the files cannot be read, reload on fsnotify events and on a poll,
// keep the last good pair when a reload fails); it is here rather than imported
// because go.mod does not require controller-runtime.
//
// It watches the files' directories rather than the files: Kubernetes Secret and
// cert-manager volumes swap a ..data symlink, which a watch on the file never sees.
type certWatcher struct {
	certPath, keyPath string

	mu       sync.RWMutex
	cert     *tls.Certificate
	certPEM  []byte
	keyPEM   []byte
	interval time.Duration
}

func newCertWatcher(certPath, keyPath string) (*certWatcher, error) {
	w := &certWatcher{certPath: certPath, keyPath: keyPath, interval: certPollInterval}
	if _, err := w.read(); err != nil {
		return nil, err
	}
	return w, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (w *certWatcher) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.cert, nil
}

// read loads the pair and swaps it in if it changed; it reports whether it did.
func (w *certWatcher) read() (bool, error) {
	certPEM, err := os.ReadFile(w.certPath)
	if err != nil {
		return false, fmt.Errorf("reading the TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(w.keyPath)
	if err != nil {
		return false, fmt.Errorf("reading the TLS key: %w", err)
	}
	w.mu.RLock()
	same := bytes.Equal(certPEM, w.certPEM) && bytes.Equal(keyPEM, w.keyPEM)
	w.mu.RUnlock()
	if same {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("loading the TLS key pair %s, %s: %w", w.certPath, w.keyPath, err)
	}
	w.mu.Lock()
	w.cert, w.certPEM, w.keyPEM = &cert, certPEM, keyPEM
	w.mu.Unlock()
	return true, nil
}

func (w *certWatcher) reload(trigger string) {
	changed, err := w.read()
	switch {
	case err != nil && trigger == "event":
		// Expected half-way through a swap (new cert, old key); the next event or
		// poll reads the finished pair.
		klog.V(2).InfoS("TLS certificate not reloaded yet", "err", err)
	case err != nil:
		klog.ErrorS(err, "TLS certificate reload failed; serving the previous certificate")
	case changed:
		klog.InfoS("TLS certificate reloaded", "cert", w.certPath, "key", w.keyPath, "trigger", trigger)
	}
}

// watch adds the watches now and returns the loop that serves them, so that a
// caller can tell the world it is serving only once changes cannot be missed. Without
// fsnotify it still polls.
func (w *certWatcher) watch() func(context.Context) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		klog.ErrorS(err, "cannot watch the TLS certificate files; polling them only", "interval", w.interval)
	} else {
		for _, dir := range uniqueDirs(w.certPath, w.keyPath) {
			if err := fw.Add(dir); err != nil {
				klog.ErrorS(err, "cannot watch a TLS certificate directory; polling it only", "dir", dir, "interval", w.interval)
			}
		}
		events, errs = fw.Events, fw.Errors
	}
	// Catch a change between the first read and the watches.
	w.reload("start")

	return func(ctx context.Context) {
		if fw != nil {
			defer fw.Close()
		}
		tick := time.NewTicker(w.interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					events = nil // the watcher died; the ticker goes on
					continue
				}
				if ev.Op != fsnotify.Chmod {
					w.reload("event")
				}
			case err, ok := <-errs:
				if !ok {
					errs = nil
					continue
				}
				klog.ErrorS(err, "TLS certificate watch error")
			case <-tick.C:
				w.reload("poll")
			}
		}
	}
}

func uniqueDirs(paths ...string) []string {
	var dirs []string
	seen := map[string]bool{}
	for _, p := range paths {
		d := filepath.Dir(p)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}
