package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestParseTLSMinVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"", 0, false},
		{"1.0", tls.VersionTLS10, false},
		{"1.1", tls.VersionTLS11, false},
		{"1.2", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, false},
		{"VersionTLS10", tls.VersionTLS10, false},
		{"VersionTLS11", tls.VersionTLS11, false},
		{"VersionTLS12", tls.VersionTLS12, false},
		{"VersionTLS13", tls.VersionTLS13, false},
		{"1.4", 0, true},
		{"TLS1.2", 0, true},
		{"versiontls12", 0, true},
		{" 1.2", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseTLSMinVersion(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseTLSMinVersion(%q) = %#x, %v; want %#x, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), `"`+tt.in+`"`) {
			t.Errorf("ParseTLSMinVersion(%q) error %q does not name the value", tt.in, err)
		}
	}
}

func TestParseCipherSuites(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint16
		wantErr string
	}{
		{in: "", want: nil},
		{in: " , ,", want: nil},
		{in: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		{
			in:   " TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 ,,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,",
			want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		},
		{in: "TLS_AES_128_GCM_SHA256", want: []uint16{tls.TLS_AES_128_GCM_SHA256}},
		// Insecure suites are accepted, as upstream does.
		{in: "TLS_RSA_WITH_RC4_128_SHA,TLS_RSA_WITH_3DES_EDE_CBC_SHA", want: []uint16{tls.TLS_RSA_WITH_RC4_128_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}},
		{in: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,bogus", wantErr: `tls-cipher-suites: unknown cipher suite "bogus"`},
		{in: "tls_ecdhe_rsa_with_aes_128_gcm_sha256", wantErr: `tls-cipher-suites: unknown cipher suite "tls_ecdhe_rsa_with_aes_128_gcm_sha256"`},
	}
	for _, tt := range tests {
		got, err := ParseCipherSuites(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("ParseCipherSuites(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseCipherSuites(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// The TLS options reach the listener: a minimum version refuses older clients, and a
// suite list without HTTP/2's required suites serves HTTP/1.1 instead of failing.
func TestServerTLSOptions(t *testing.T) {
	tests := []struct {
		name       string
		minVersion string
		suites     string
		clientMax  uint16
		wantErr    string
		wantProto  string
	}{
		{name: "defaults", wantProto: "HTTP/2.0"},
		{name: "min 1.3 refuses a 1.2 client", minVersion: "1.3", clientMax: tls.VersionTLS12, wantErr: "protocol version"},
		{name: "min 1.2 takes a 1.2 client", minVersion: "VersionTLS12", clientMax: tls.VersionTLS12, wantProto: "HTTP/2.0"},
		{name: "suites without HTTP/2's", minVersion: "1.2", suites: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", clientMax: tls.VersionTLS12, wantProto: "HTTP/1.1"},
		{name: "suites with HTTP/2's", minVersion: "1.2", suites: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", clientMax: tls.VersionTLS12, wantProto: "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(o *Options) { o.TLSMinVersion, o.TLSCipherSuites = tt.minVersion, tt.suites })
			pool := x509.NewCertPool()
			pool.AddCert(ts.cert.cert)
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tt.clientMax}, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(ts.webhook + "/healthz")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("GET = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Proto != tt.wantProto {
				t.Errorf("GET = %d %s, want 200 %s", resp.StatusCode, resp.Proto, tt.wantProto)
			}
		})
	}
}
