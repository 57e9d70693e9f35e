package awsfake

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// issuer is a minimal OIDC issuer: discovery document and JWKS over TLS, and a signer.
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	kid string
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	is := &issuer{key: mustKey(t), kid: "key-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/openid/v1/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		pub := is.key.PublicKey
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "use": "sig", "alg": "RS256", "kid": is.kid,
			"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	})
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func mustKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// tok describes a token; zero fields get valid defaults.
type tok struct {
	alg, kid, iss, sub string
	aud                any
	exp, nbf           time.Time
	key                *rsa.PrivateKey
}

func (is *issuer) sign(t *testing.T, o tok) string {
	t.Helper()
	now := time.Now()
	if o.alg == "" {
		o.alg = "RS256"
	}
	if o.kid == "" {
		o.kid = is.kid
	}
	if o.iss == "" {
		o.iss = is.srv.URL
	}
	if o.sub == "" {
		o.sub = "system:serviceaccount:ns1:app"
	}
	if o.aud == nil {
		o.aud = []string{DefaultSTSAudience}
	}
	if o.exp.IsZero() {
		o.exp = now.Add(time.Hour)
	}
	if o.nbf.IsZero() {
		o.nbf = now.Add(-time.Minute)
	}
	if o.key == nil {
		o.key = is.key
	}
	hdr, _ := json.Marshal(map[string]string{"alg": o.alg, "kid": o.kid})
	pl, _ := json.Marshal(map[string]any{"iss": o.iss, "sub": o.sub, "aud": o.aud, "exp": o.exp.Unix(), "nbf": o.nbf.Unix(),
		"iat": o.nbf.Unix(), "kubernetes.io": map[string]any{"namespace": "ns1", "serviceaccount": map[string]string{"name": "app", "uid": "u1"}}})
	in := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(pl)
	d := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, o.key, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func (is *issuer) verifier() *Verifier { return NewVerifier(is.srv.URL, is.srv.Client()) }

const (
	role      = "arn:aws:iam::111122223333:role/app"
	otherRole = "arn:aws:iam::111122223333:role/other"
	subject   = "system:serviceaccount:ns1:app"
)

func TestVerifier(t *testing.T) {
	is := newIssuer(t)
	v := is.verifier()
	ctx := context.Background()
	c, err := v.Verify(ctx, is.sign(t, tok{aud: "sts.amazonaws.com"}), DefaultSTSAudience) // string aud form
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if c.Subject != subject || c.Issuer != is.srv.URL || c.Kubernetes.Namespace != "ns1" || c.Kubernetes.ServiceAccount.Name != "app" {
		t.Fatalf("claims = %+v", c)
	}
	unreachable := NewVerifier("https://127.0.0.1:1", is.srv.Client())
	if _, err := unreachable.Verify(ctx, is.sign(t, tok{}), DefaultSTSAudience); err == nil {
		t.Fatal("unreachable issuer: want an error")
	} else if te := (*TokenError)(nil); errors.As(err, &te) {
		t.Fatalf("unreachable issuer reported as a token error: %v", err)
	}
	// The discovery document must name the issuer itself.
	wrongDisc := NewVerifier(is.srv.URL+"/", is.srv.Client())
	if _, err := wrongDisc.Verify(ctx, is.sign(t, tok{iss: is.srv.URL + "/"}), DefaultSTSAudience); err == nil || !strings.Contains(err.Error(), "discovery document names issuer") {
		t.Fatalf("discovery issuer mismatch: err = %v", err)
	}
}

// stsClient is the real SDK STS client pointed at the fake.
func stsClient(s *STS) *sts.Client {
	return sts.New(sts.Options{
		Region:       "us-west-2",
		BaseEndpoint: aws.String(s.URL()),
		HTTPClient:   s.Client(),
		Credentials:  aws.AnonymousCredentials{},
	})
}

func TestSTS(t *testing.T) {
	is := newIssuer(t)
	s := NewSTS(is.verifier(), DefaultSTSAudience)
	defer s.Close()
	s.Trust(role, subject)
	s.Trust(otherRole, "system:serviceaccount:ns1:other")
	client := stsClient(s)
	ctx := context.Background()

	out, err := client.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(role), RoleSessionName: aws.String("s1"), WebIdentityToken: aws.String(is.sign(t, tok{})),
	})
	if err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	got, ok := s.Lookup(aws.ToString(out.Credentials.AccessKeyId))
	if !ok || got.RoleARN != role || got.Subject != subject || got.SessionName != "s1" ||
		aws.ToString(out.Credentials.SecretAccessKey) != got.SecretAccessKey || aws.ToString(out.Credentials.SessionToken) != got.SessionToken {
		t.Fatalf("issued %+v (found %v) for response %+v", got, ok, out.Credentials)
	}
	if aws.ToString(out.SubjectFromWebIdentityToken) != subject || aws.ToString(out.AssumedRoleUser.Arn) != "arn:aws:sts::111122223333:assumed-role/app/s1" ||
		aws.ToString(out.Audience) != DefaultSTSAudience || !out.Credentials.Expiration.After(time.Now().Add(59*time.Minute)) {
		t.Fatalf("response = %+v %+v", out, out.AssumedRoleUser)
	}

	otherKey := mustKey(t)
	cases := []struct {
		name     string
		role     string
		token    string
		wantCode string
	}{
		{"bad signature", role, is.sign(t, tok{key: otherKey}), "InvalidIdentityToken"},
		{"unknown kid", role, is.sign(t, tok{kid: "nope"}), "InvalidIdentityToken"},
		{"alg none", role, strings.Join(strings.Split(is.sign(t, tok{alg: "none"}), ".")[:2], ".") + ".", "InvalidIdentityToken"},
		{"HS256", role, is.sign(t, tok{alg: "HS256"}), "InvalidIdentityToken"},
		{"wrong audience", role, is.sign(t, tok{aud: []string{DefaultPodIdentityAudience}}), "InvalidIdentityToken"},
		{"wrong issuer", role, is.sign(t, tok{iss: "https://evil.example.com"}), "InvalidIdentityToken"},
		{"not a jwt", role, "abc.def", "InvalidIdentityToken"},
		{"expired", role, is.sign(t, tok{exp: time.Now().Add(-time.Second), nbf: time.Now().Add(-time.Hour)}), "ExpiredTokenException"},
		{"not yet valid", role, is.sign(t, tok{nbf: time.Now().Add(time.Hour), exp: time.Now().Add(2 * time.Hour)}), "InvalidIdentityToken"},
		{"wrong subject", role, is.sign(t, tok{sub: "system:serviceaccount:ns1:other"}), "AccessDenied"},
		{"wrong role", otherRole, is.sign(t, tok{}), "AccessDenied"},
		{"unknown role", "arn:aws:iam::111122223333:role/nobody", is.sign(t, tok{}), "AccessDenied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
				RoleArn: aws.String(tc.role), RoleSessionName: aws.String("s1"), WebIdentityToken: aws.String(tc.token),
			})
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tc.wantCode {
				t.Fatalf("err = %v, want code %s", err, tc.wantCode)
			}
			calls := s.Calls()
			last := calls[len(calls)-1]
			wantStatus := http.StatusBadRequest
			if tc.wantCode == "AccessDenied" {
				wantStatus = http.StatusForbidden
			}
			if last.ErrorCode != tc.wantCode || last.Status != wantStatus {
				t.Fatalf("last call = %+v, want %s/%d", last, tc.wantCode, wantStatus)
			}
		})
	}
}

// TestSTSProtocol covers the query-protocol checks the SDK never trips.
func TestSTSProtocol(t *testing.T) {
	is := newIssuer(t)
	s := NewSTS(is.verifier(), DefaultSTSAudience)
	defer s.Close()
	s.Trust(role, subject)
	good := url.Values{"Action": {"AssumeRoleWithWebIdentity"}, "Version": {"2011-06-15"}, "RoleArn": {role},
		"RoleSessionName": {"s1"}, "WebIdentityToken": {is.sign(t, tok{})}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	cases := []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"ok", good, 200, ""},
		{"other action", with("Action", "AssumeRole"), 400, "InvalidAction"},
		{"bad version", with("Version", "2020-01-01"), 400, "InvalidAction"},
		{"no token", with("WebIdentityToken", ""), 400, "MissingParameter"},
		{"no session", with("RoleSessionName", ""), 400, "MissingParameter"},
		{"bad session", with("RoleSessionName", "a b"), 400, "ValidationError"},
		{"bad role arn", with("RoleArn", "app"), 400, "ValidationError"},
		{"short duration", with("DurationSeconds", "60"), 400, "ValidationError"},
	}
	for _, tc := range cases {
		resp, err := s.Client().PostForm(s.URL(), tc.form)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Type, Code, Message string }
		}
		var buf strings.Builder
		_, _ = ioCopy(&buf, resp)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.status, buf.String())
			continue
		}
		if tc.code != "" {
			if err := xmlUnmarshal(buf.String(), &e); err != nil || e.Error.Code != tc.code || e.Error.Type != "Sender" {
				t.Errorf("%s: body %s, want code %s (%v)", tc.name, buf.String(), tc.code, err)
			}
		}
	}
}

func ccProvider(c *ContainerCredentials, token string) *endpointcreds.Provider {
	return endpointcreds.New(c.URL(), func(o *endpointcreds.Options) {
		o.AuthorizationToken = token
		o.Retryer = aws.NopRetryer{}
	})
}

func TestContainerCredentials(t *testing.T) {
	is := newIssuer(t)
	c, err := NewContainerCredentials(is.verifier(), DefaultPodIdentityAudience, "/v1/credentials")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Associate(subject, role)
	ctx := context.Background()
	podTok := func(o tok) string {
		if o.aud == nil {
			o.aud = []string{DefaultPodIdentityAudience}
		}
		return is.sign(t, o)
	}

	creds, err := ccProvider(c, podTok(tok{})).Retrieve(ctx)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	got, ok := c.Lookup(creds.AccessKeyID)
	if !ok || got.RoleARN != role || got.Subject != subject || creds.SecretAccessKey != got.SecretAccessKey ||
		creds.SessionToken != got.SessionToken || !creds.CanExpire || creds.AccountID != "111122223333" {
		t.Fatalf("creds %+v, issued %+v (found %v)", creds, got, ok)
	}

	cases := []struct {
		name, token, code string
		status            int
	}{
		{"no token", "", "InvalidTokenException", 400},
		{"bad signature", podTok(tok{key: mustKey(t)}), "InvalidTokenException", 401},
		{"wrong audience", is.sign(t, tok{aud: []string{DefaultSTSAudience}}), "InvalidTokenException", 401},
		{"wrong issuer", podTok(tok{iss: "https://evil.example.com"}), "InvalidTokenException", 401},
		{"expired", podTok(tok{exp: time.Now().Add(-time.Second), nbf: time.Now().Add(-time.Hour)}), "ExpiredTokenException", 401},
		{"no association", podTok(tok{sub: "system:serviceaccount:ns1:other"}), "AccessDeniedException", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ccProvider(c, tc.token).Retrieve(ctx)
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
			calls := c.Calls()
			if last := calls[len(calls)-1]; last.Status != tc.status || last.ErrorCode != tc.code {
				t.Fatalf("last call = %+v, want %d %s", last, tc.status, tc.code)
			}
		})
	}

	resp, err := http.Get("http://" + c.Addr() + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("wrong path: status %d", resp.StatusCode)
	}
}

// TestCAPEM checks that the STS's advertised CA verifies its serving certificate, as
// the SDK does with AWS_CA_BUNDLE.
func TestCAPEM(t *testing.T) {
	is := newIssuer(t)
	s := NewSTS(is.verifier(), DefaultSTSAudience)
	defer s.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: status %d", resp.StatusCode)
	}
}
