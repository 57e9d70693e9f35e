package webhook

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
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
// says: events get lost when a directory is replaced or a volume remounted.
var certPollInterval = 10 * time.Second

// newCertWatcher loads the pair (failing at start if it cannot) and returns
// controller-runtime's watcher, which serves the latest good pair, reloads it on file
// events (re-adding its watch after the ..data symlink swap of Secret volumes) and on
// a poll, and keeps the last good pair when a reload fails.
func newCertWatcher(certPath, keyPath string) (*certwatcher.CertWatcher, error) {
	w, err := certwatcher.New(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS key pair %s, %s: %w", certPath, keyPath, err)
	}
	return w.WithWatchInterval(certPollInterval), nil
}
