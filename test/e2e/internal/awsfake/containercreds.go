package awsfake

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultPodIdentityAudience is the audience of EKS Pod Identity tokens.
const DefaultPodIdentityAudience = "pods.eks.amazonaws.com"

// ContainerCredentials is the EKS Pod Identity Agent's credentials endpoint (what
// AWS_CONTAINER_CREDENTIALS_FULL_URI points at in a pod), served over plain HTTP on
// 127.0.0.1, because the SDK only accepts http:// for loopback and the EKS/ECS link-local
// addresses. A request must carry a valid token in its Authorization header (the SDK
// reads it from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE); the credentials are those of
// the role associated with the token's ServiceAccount (see Associate).
type ContainerCredentials struct {
	verifier *Verifier
	audience string
	path     string
	server   *http.Server
	listener net.Listener

	mu     sync.Mutex
	assoc  map[string]string // subject -> role ARN
	issued map[string]Issued
	calls  []CCCall
}

// CCCall is one request the endpoint received, with its outcome.
type CCCall struct {
	Path      string
	Status    int
	ErrorCode string
	Message   string
}

// NewContainerCredentials starts the endpoint on 127.0.0.1 at a free port, serving
// path (for example /v1/credentials).
func NewContainerCredentials(verifier *Verifier, audience, path string) (*ContainerCredentials, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &ContainerCredentials{verifier: verifier, audience: audience, path: path, listener: l,
		assoc: map[string]string{}, issued: map[string]Issued{}}
	c.server = &http.Server{Handler: http.HandlerFunc(c.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.server.Serve(l) }()
	return c, nil
}

// URL is the full credentials URI, for AWS_CONTAINER_CREDENTIALS_FULL_URI.
func (c *ContainerCredentials) URL() string { return "http://" + c.listener.Addr().String() + c.path }

// Addr is host:port of the endpoint.
func (c *ContainerCredentials) Addr() string { return c.listener.Addr().String() }

// Close stops the server.
func (c *ContainerCredentials) Close() { _ = c.server.Close() }

// Associate makes roleARN the role of the ServiceAccount named by subject
// (system:serviceaccount:<ns>:<sa>), like an EKS Pod Identity association.
func (c *ContainerCredentials) Associate(subject, roleARN string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.assoc[subject] = roleARN
}

// Lookup returns the credentials issued with accessKeyID.
func (c *ContainerCredentials) Lookup(accessKeyID string) (Issued, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.issued[accessKeyID]
	return i, ok
}

// Calls returns every request received so far.
func (c *ContainerCredentials) Calls() []CCCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]CCCall(nil), c.calls...)
}

type ccResponse struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	AccountID       string `json:"AccountId,omitempty"`
	Expiration      string `json:"Expiration"`
}

type ccError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *ccError) Error() string { return e.Code + ": " + e.Message }

func (c *ContainerCredentials) serveHTTP(w http.ResponseWriter, r *http.Request) {
	call := CCCall{Path: r.URL.Path}
	var body any
	err := func() error {
		if r.URL.Path != c.path {
			return &ccError{http.StatusNotFound, "NotFound", fmt.Sprintf("no credentials at %s", r.URL.Path)}
		}
		if r.Method != http.MethodGet {
			return &ccError{http.StatusMethodNotAllowed, "InvalidRequest", "only GET is supported"}
		}
		token := r.Header.Get("Authorization")
		if token == "" {
			return &ccError{http.StatusBadRequest, "InvalidTokenException", "Service account token cannot be empty"}
		}
		claims, err := c.verifier.Verify(r.Context(), token, c.audience)
		if err != nil {
			var te *TokenError
			switch {
			case errors.As(err, &te) && te.Expired:
				return &ccError{http.StatusUnauthorized, "ExpiredTokenException", te.Reason}
			case errors.As(err, &te):
				return &ccError{http.StatusUnauthorized, "InvalidTokenException", te.Reason}
			default:
				return &ccError{http.StatusInternalServerError, "ServiceUnavailableException", err.Error()}
			}
		}
		c.mu.Lock()
		role, ok := c.assoc[claims.Subject]
		c.mu.Unlock()
		if !ok {
			return &ccError{http.StatusForbidden, "AccessDeniedException", fmt.Sprintf("no Pod Identity association for %s", claims.Subject)}
		}
		is := newCredentials(6 * time.Hour)
		is.RoleARN, is.Subject, is.Audience, is.Claims = role, claims.Subject, c.audience, *claims
		c.mu.Lock()
		c.issued[is.AccessKeyID] = is
		c.mu.Unlock()
		body = ccResponse{AccessKeyID: is.AccessKeyID, SecretAccessKey: is.SecretAccessKey, Token: is.SessionToken,
			AccountID: accountOf(role), Expiration: is.Expiration.UTC().Format(time.RFC3339)}
		return nil
	}()
	call.Status = http.StatusOK
	if err != nil {
		var ce *ccError
		errors.As(err, &ce)
		call.Status, call.ErrorCode, call.Message = ce.status, ce.Code, ce.Message
		body = ce
	}
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(call.Status)
	_ = json.NewEncoder(w).Encode(body)
}

// accountOf returns the account id of arn:<partition>:iam::<account>:role/<name>.
func accountOf(roleARN string) string {
	if !roleARNRE.MatchString(roleARN) {
		return ""
	}
	return strings.SplitN(roleARN, ":", 6)[4]
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
