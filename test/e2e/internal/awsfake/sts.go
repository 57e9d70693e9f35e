package awsfake

import (
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"time"
)

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

// DefaultSTSAudience is the audience AWS STS requires of EKS web identity tokens.
const DefaultSTSAudience = "sts.amazonaws.com"

// Issued records one set of credentials a fake endpoint handed out.
type Issued struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
	RoleARN         string
	SessionName     string // STS only
	Subject         string
	Audience        string // the audience the token was accepted for
	Claims          Claims
}

// STS serves AssumeRoleWithWebIdentity over HTTPS in the AWS query protocol. A role is
// assumable only by the token subjects its trust policy lists (see Trust), only with a
// token the verifier accepts for the configured audience.
type STS struct {
	verifier *Verifier
	audience string
	server   *httptest.Server

	mu     sync.Mutex
	trust  map[string]map[string]bool // role ARN -> subjects
	issued map[string]Issued          // access key id -> record
	calls  []STSCall
}

// STSCall is one request the STS received, with its outcome.
type STSCall struct {
	Action    string
	RoleARN   string
	Session   string
	Status    int
	ErrorCode string
	Message   string
}

// NewSTS starts an STS on an httptest TLS server on 127.0.0.1. Close it when done.
func NewSTS(verifier *Verifier, audience string) *STS {
	s := &STS{verifier: verifier, audience: audience, trust: map[string]map[string]bool{}, issued: map[string]Issued{}}
	s.server = httptest.NewTLSServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL is the endpoint, for AWS_ENDPOINT_URL_STS.
func (s *STS) URL() string { return s.server.URL }

// Client returns an HTTP client that trusts the STS certificate.
func (s *STS) Client() *http.Client { return s.server.Client() }

// CAPEM is the PEM certificate the SDK must trust (AWS_CA_BUNDLE). httptest's
// certificate is self-signed, so it is its own CA.
func (s *STS) CAPEM() []byte { return certPEM(s.server.Certificate().Raw) }

// Close stops the server.
func (s *STS) Close() { s.server.Close() }

// Trust adds subject (system:serviceaccount:<ns>:<sa>) to the trust policy of roleARN,
// the equivalent of a StringEquals condition on "<issuer>:sub".
func (s *STS) Trust(roleARN, subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trust[roleARN] == nil {
		s.trust[roleARN] = map[string]bool{}
	}
	s.trust[roleARN][subject] = true
}

// Lookup returns the credentials issued with accessKeyID.
func (s *STS) Lookup(accessKeyID string) (Issued, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.issued[accessKeyID]
	return i, ok
}

// Calls returns every request received so far.
func (s *STS) Calls() []STSCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]STSCall(nil), s.calls...)
}

type stsError struct {
	status  int
	code    string
	message string
}

func (e *stsError) Error() string { return e.code + ": " + e.message }

var sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
var roleARNRE = regexp.MustCompile(`^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$`)

func (s *STS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	call := STSCall{}
	var body any
	err := func() error {
		if r.Method != http.MethodPost {
			return &stsError{http.StatusMethodNotAllowed, "InvalidAction", "only POST is supported"}
		}
		if err := r.ParseForm(); err != nil {
			return &stsError{http.StatusBadRequest, "MalformedQueryString", err.Error()}
		}
		f := r.PostForm
		call.Action, call.RoleARN, call.Session = f.Get("Action"), f.Get("RoleArn"), f.Get("RoleSessionName")
		if call.Action != "AssumeRoleWithWebIdentity" {
			return &stsError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %q for version %q", call.Action, f.Get("Version"))}
		}
		if v := f.Get("Version"); v != "2011-06-15" {
			return &stsError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("unsupported API version %q", v)}
		}
		for _, k := range []string{"RoleArn", "RoleSessionName", "WebIdentityToken"} {
			if f.Get(k) == "" {
				return &stsError{http.StatusBadRequest, "MissingParameter", "The request must contain the parameter " + k}
			}
		}
		if !roleARNRE.MatchString(call.RoleARN) {
			return &stsError{http.StatusBadRequest, "ValidationError", fmt.Sprintf("%s is invalid", call.RoleARN)}
		}
		if !sessionNameRE.MatchString(call.Session) {
			return &stsError{http.StatusBadRequest, "ValidationError", fmt.Sprintf("1 validation error detected: Value %q at 'roleSessionName' failed to satisfy constraint", call.Session)}
		}
		duration := time.Hour
		if d := f.Get("DurationSeconds"); d != "" {
			n, err := strconv.Atoi(d)
			if err != nil || n < 900 || n > 43200 {
				return &stsError{http.StatusBadRequest, "ValidationError", fmt.Sprintf("DurationSeconds %q must be between 900 and 43200", d)}
			}
			duration = time.Duration(n) * time.Second
		}
		claims, err := s.verifier.Verify(r.Context(), f.Get("WebIdentityToken"), s.audience)
		if err != nil {
			var te *TokenError
			switch {
			case errors.As(err, &te) && te.Expired:
				return &stsError{http.StatusBadRequest, "ExpiredTokenException", "Token expired: " + te.Reason}
			case errors.As(err, &te):
				return &stsError{http.StatusBadRequest, "InvalidIdentityToken", te.Reason}
			default:
				return &stsError{http.StatusBadRequest, "IDPCommunicationError", err.Error()}
			}
		}
		s.mu.Lock()
		trusted := s.trust[call.RoleARN][claims.Subject]
		s.mu.Unlock()
		if !trusted {
			return &stsError{http.StatusForbidden, "AccessDenied", fmt.Sprintf("Not authorized to perform sts:AssumeRoleWithWebIdentity (role %s, subject %s)", call.RoleARN, claims.Subject)}
		}
		is := newCredentials(duration)
		is.RoleARN, is.SessionName, is.Subject, is.Audience, is.Claims = call.RoleARN, call.Session, claims.Subject, s.audience, *claims
		s.mu.Lock()
		s.issued[is.AccessKeyID] = is
		s.mu.Unlock()
		body = assumeRoleResponse(is, claims.Issuer)
		return nil
	}()
	if err != nil {
		var se *stsError
		errors.As(err, &se)
		call.Status, call.ErrorCode, call.Message = se.status, se.code, se.message
		body = errorResponse{XMLNS: stsNamespace, Error: errorBody{Type: "Sender", Code: se.code, Message: se.message}, RequestID: randomID(16)}
	} else {
		call.Status = http.StatusOK
	}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
	out, _ := xml.Marshal(body)
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(call.Status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

type errorResponse struct {
	XMLName   xml.Name  `xml:"ErrorResponse"`
	XMLNS     string    `xml:"xmlns,attr"`
	Error     errorBody `xml:"Error"`
	RequestID string    `xml:"RequestId"`
}

type errorBody struct {
	Type    string `xml:"Type"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

type assumeRoleXML struct {
	XMLName xml.Name `xml:"AssumeRoleWithWebIdentityResponse"`
	XMLNS   string   `xml:"xmlns,attr"`
	Result  struct {
		SubjectFromWebIdentityToken string `xml:"SubjectFromWebIdentityToken"`
		Audience                    string `xml:"Audience"`
		AssumedRoleUser             struct {
			Arn           string `xml:"Arn"`
			AssumedRoleID string `xml:"AssumedRoleId"`
		} `xml:"AssumedRoleUser"`
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string `xml:"SecretAccessKey"`
			SessionToken    string `xml:"SessionToken"`
			Expiration      string `xml:"Expiration"`
		} `xml:"Credentials"`
		Provider string `xml:"Provider"`
	} `xml:"AssumeRoleWithWebIdentityResult"`
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

func assumeRoleResponse(is Issued, issuer string) assumeRoleXML {
	var x assumeRoleXML
	x.XMLNS = stsNamespace
	x.Result.SubjectFromWebIdentityToken = is.Subject
	x.Result.Audience = is.Audience
	x.Result.AssumedRoleUser.Arn = assumedRoleARN(is.RoleARN, is.SessionName)
	x.Result.AssumedRoleUser.AssumedRoleID = "AROA" + randomID(17) + ":" + is.SessionName
	x.Result.Credentials.AccessKeyID = is.AccessKeyID
	x.Result.Credentials.SecretAccessKey = is.SecretAccessKey
	x.Result.Credentials.SessionToken = is.SessionToken
	x.Result.Credentials.Expiration = is.Expiration.UTC().Format(time.RFC3339)
	x.Result.Provider = issuer
	x.RequestID = randomID(16)
	return x
}

// assumedRoleARN turns arn:aws:iam::123456789012:role/path/name into
// arn:aws:sts::123456789012:assumed-role/name/session.
func assumedRoleARN(roleARN, session string) string {
	m := regexp.MustCompile(`^arn:(aws[\w-]*):iam::(\d{12}):role/(?:.*/)?([^/]+)$`).FindStringSubmatch(roleARN)
	if m == nil {
		return ""
	}
	return fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", m[1], m[2], m[3], session)
}

func newCredentials(d time.Duration) Issued {
	return Issued{
		AccessKeyID:     "ASIA" + randomID(16),
		SecretAccessKey: randomString(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
		SessionToken:    "FwoGZXIvYXdzE" + randomString(120, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
		Expiration:      time.Now().Add(d).Truncate(time.Second),
	}
}

func randomID(n int) string { return randomString(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") }

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
