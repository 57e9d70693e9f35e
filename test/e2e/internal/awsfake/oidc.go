// Package awsfake holds local stand-ins for the AWS endpoints a pod's SDK talks to when
// it has an IAM identity: an STS that implements AssumeRoleWithWebIdentity, and an EKS
// Pod Identity container credentials endpoint. Both verify ServiceAccount tokens the way
// AWS does, against the issuer's published OIDC keys, so an end-to-end test proves that
// the token a pod would mount is one AWS would accept.
package awsfake

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Claims are the verified claims of a ServiceAccount token.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	IssuedAt  time.Time
	NotBefore time.Time
	Expiry    time.Time
	KeyID     string
	// Kubernetes is the "kubernetes.io" private claim (namespace, serviceaccount, pod).
	Kubernetes KubernetesClaims
}

// KubernetesClaims is the "kubernetes.io" claim of a bound ServiceAccount token.
type KubernetesClaims struct {
	Namespace      string  `json:"namespace"`
	ServiceAccount *ObjRef `json:"serviceaccount,omitempty"`
	Pod            *ObjRef `json:"pod,omitempty"`
	Node           *ObjRef `json:"node,omitempty"`
}

// ObjRef is a name and uid pair inside the "kubernetes.io" claim.
type ObjRef struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// TokenError is a token that verification refused. Expired tells the callers that map
// failures to AWS error codes apart.
type TokenError struct {
	Reason  string
	Expired bool
}

func (e *TokenError) Error() string { return e.Reason }

func tokenErr(format string, args ...any) error {
	return &TokenError{Reason: fmt.Sprintf(format, args...)}
}

// Verifier checks RS256 JWTs against the JWKS an OIDC issuer publishes, found through
// the issuer's discovery document, as AWS IAM does for an OIDC identity provider.
type Verifier struct {
	issuer string
	client *http.Client
	now    func() time.Time
	skew   time.Duration

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time
}

// VerifierOption configures a Verifier.
type VerifierOption func(*Verifier)

// WithClock sets the clock used for exp/nbf checks (tests).
func WithClock(now func() time.Time) VerifierOption { return func(v *Verifier) { v.now = now } }

// WithSkew sets the tolerated clock skew for exp and nbf (default 0: exp is strict).
func WithSkew(d time.Duration) VerifierOption { return func(v *Verifier) { v.skew = d } }

// NewVerifier returns a verifier for issuer. client must trust the issuer's TLS
// certificate; the discovery document and JWKS are fetched with it, anonymously.
func NewVerifier(issuer string, client *http.Client, opts ...VerifierOption) *Verifier {
	v := &Verifier{issuer: issuer, client: client, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	return v
}

// Issuer returns the issuer URL this verifier accepts.
func (v *Verifier) Issuer() string { return v.issuer }

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

type jwtPayload struct {
	Iss        string           `json:"iss"`
	Sub        string           `json:"sub"`
	Aud        audience         `json:"aud"`
	Exp        *json.Number     `json:"exp"`
	Nbf        *json.Number     `json:"nbf"`
	Iat        *json.Number     `json:"iat"`
	Kubernetes KubernetesClaims `json:"kubernetes.io"`
}

// audience accepts both JWT forms: a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// Verify checks the token's signature, issuer, audience (it must contain aud) and
// validity window, and returns its claims. Every refusal is a *TokenError, except
// failures to reach the issuer.
func (v *Verifier) Verify(ctx context.Context, token, aud string) (*Claims, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil, tokenErr("token is not a JWS compact serialization (%d parts)", len(parts))
	}
	var hdr jwtHeader
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return nil, tokenErr("token header: %v", err)
	}
	if hdr.Alg != "RS256" {
		return nil, tokenErr("unsupported signing algorithm %q", hdr.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, tokenErr("token signature encoding: %v", err)
	}
	keys, err := v.keysFor(ctx, hdr.Kid)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	verified := false
	for _, k := range keys {
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, tokenErr("token signature does not verify against the issuer's keys (kid %q)", hdr.Kid)
	}

	var p jwtPayload
	if err := decodeSegment(parts[1], &p); err != nil {
		return nil, tokenErr("token payload: %v", err)
	}
	if p.Iss != v.issuer {
		return nil, tokenErr("token issuer %q is not the trusted issuer %q", p.Iss, v.issuer)
	}
	if !contains(p.Aud, aud) {
		return nil, tokenErr("incorrect token audience %q, want %q", []string(p.Aud), aud)
	}
	if p.Sub == "" {
		return nil, tokenErr("token has no sub claim")
	}
	c := &Claims{Issuer: p.Iss, Subject: p.Sub, Audience: p.Aud, KeyID: hdr.Kid, Kubernetes: p.Kubernetes}
	if c.Expiry, err = numericDate(p.Exp); err != nil || p.Exp == nil {
		return nil, tokenErr("token has no valid exp claim")
	}
	if c.NotBefore, err = numericDate(p.Nbf); err != nil {
		return nil, tokenErr("token nbf claim: %v", err)
	}
	if c.IssuedAt, err = numericDate(p.Iat); err != nil {
		return nil, tokenErr("token iat claim: %v", err)
	}
	now := v.now()
	if !now.Before(c.Expiry.Add(v.skew)) {
		return nil, &TokenError{Reason: fmt.Sprintf("token expired at %s (now %s)", c.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)), Expired: true}
	}
	if p.Nbf != nil && now.Add(v.skew).Before(c.NotBefore) {
		return nil, tokenErr("token not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// keysFor returns the key with kid, or every key when kid is empty. An unknown kid
// triggers one re-fetch (key rotation), at most once every 5 seconds.
func (v *Verifier) keysFor(ctx context.Context, kid string) ([]*rsa.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	pick := func() []*rsa.PublicKey {
		if kid != "" {
			if k, ok := v.keys[kid]; ok {
				return []*rsa.PublicKey{k}
			}
			return nil
		}
		var all []*rsa.PublicKey
		for _, k := range v.keys {
			all = append(all, k)
		}
		return all
	}
	if ks := pick(); len(ks) > 0 {
		return ks, nil
	}
	if v.keys == nil || v.now().Sub(v.fetchedAt) > 5*time.Second {
		keys, err := v.fetchKeys(ctx)
		if err != nil {
			return nil, fmt.Errorf("fetching the issuer's keys: %w", err)
		}
		v.keys, v.fetchedAt = keys, v.now()
	}
	if ks := pick(); len(ks) > 0 {
		return ks, nil
	}
	return nil, tokenErr("no key with kid %q in the issuer's JWKS", kid)
}

func (v *Verifier) fetchKeys(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.getJSON(ctx, strings.TrimSuffix(v.issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil {
		return nil, err
	}
	if disc.Issuer != v.issuer {
		return nil, fmt.Errorf("discovery document names issuer %q, want %q", disc.Issuer, v.issuer)
	}
	if disc.JWKSURI == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Alg string `json:"alg"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := v.getJSON(ctx, disc.JWKSURI, &set); err != nil {
		return nil, err
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("JWKS key %q: bad modulus or exponent", k.Kid)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no RSA signing keys")
	}
	return keys, nil
}

func (v *Verifier) getJSON(ctx context.Context, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: %v", url, err)
	}
	return nil
}

func decodeSegment(seg string, into any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	return d.Decode(into)
}

func numericDate(n *json.Number) (time.Time, error) {
	if n == nil {
		return time.Time{}, nil
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, err
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
