package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/test/e2e/internal/awsfake"
)

// TestHarness checks the control plane the other tests rely on.
func TestHarness(t *testing.T) {
	t.Run("server version", func(t *testing.T) {
		v, err := cluster.Client.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != "v1.37.2" {
			t.Fatalf("kube-apiserver version %s, want v1.37.2", v.GitVersion)
		}
	})

	t.Run("default ServiceAccount", func(t *testing.T) {
		if _, err := cluster.Client.CoreV1().ServiceAccounts("default").Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("anonymous OIDC discovery", func(t *testing.T) {
		hc := cluster.IssuerClient()
		var disc struct {
			Issuer  string   `json:"issuer"`
			JWKSURI string   `json:"jwks_uri"`
			Algs    []string `json:"id_token_signing_alg_values_supported"`
		}
		getJSON(t, hc, cluster.Issuer+"/.well-known/openid-configuration", &disc)
		if disc.Issuer != cluster.Issuer || disc.JWKSURI != cluster.Issuer+"/openid/v1/jwks" || len(disc.Algs) != 1 || disc.Algs[0] != "RS256" {
			t.Fatalf("discovery document %+v", disc)
		}
		var jwks struct {
			Keys []struct{ Kty, Alg, Kid string }
		}
		getJSON(t, hc, disc.JWKSURI, &jwks)
		if len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "RSA" || jwks.Keys[0].Alg != "RS256" || jwks.Keys[0].Kid == "" {
			t.Fatalf("JWKS %+v", jwks)
		}
	})

	t.Run("TokenRequest token verifies against the JWKS", func(t *testing.T) {
		exp := int64(3600)
		tr, err := cluster.Client.CoreV1().ServiceAccounts("default").CreateToken(t.Context(), "default", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{awsfake.DefaultSTSAudience}, ExpirationSeconds: &exp},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v := awsfake.NewVerifier(cluster.Issuer, cluster.IssuerClient())
		claims, err := v.Verify(t.Context(), tr.Status.Token, awsfake.DefaultSTSAudience)
		if err != nil {
			t.Fatal(err)
		}
		if claims.Subject != "system:serviceaccount:default:default" || claims.Expiry.Sub(claims.IssuedAt) != time.Hour {
			t.Fatalf("claims %+v", claims)
		}
		if _, err := v.Verify(t.Context(), tr.Status.Token, awsfake.DefaultPodIdentityAudience); err == nil {
			t.Fatal("token accepted for the wrong audience")
		}
	})

	t.Run("webhook registration and dry-run wait", testWebhookRegistration)
}

func getJSON(t *testing.T, hc *http.Client, url string, into any) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s (anonymous): %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// testWebhookRegistration proves RegisterWebhook/WaitForMutation with a stdlib webhook
// served with the harness's webhook certificate: the same path the real webhook takes.
func testWebhookRegistration(t *testing.T) {
	const annotation = "e2e.pod-identity-webhook.io/stub"
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, fmt.Sprintf("bad review: %v", err), http.StatusBadRequest)
			return
		}
		calls.Add(1)
		var pod corev1.Pod
		_ = json.Unmarshal(review.Request.Object.Raw, &pod)
		patch := `[{"op":"add","path":"/metadata/annotations","value":{"` + annotation + `":"` + review.Request.Namespace + `"}}]`
		if pod.Annotations != nil {
			patch = `[{"op":"add","path":"/metadata/annotations/` + jsonPointerEscape(annotation) + `","value":"` + review.Request.Namespace + `"}]`
		}
		pt := admissionv1.PatchTypeJSONPatch
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, Patch: []byte(patch), PatchType: &pt}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(review)
	})
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(l, cluster.PKI.WebhookCertFile, cluster.PKI.WebhookKeyFile) }()
	t.Cleanup(func() { _ = srv.Close() })

	ns := cluster.CreateNamespace(t, nil)
	other := cluster.CreateNamespace(t, nil)
	cluster.RegisterWebhook(t, WebhookRegistration{Port: port, NamespaceSelector: NamespaceOnly(ns), AdmissionReviewVersions: []string{"v1"}})
	cluster.WaitForMutation(t, SimplePod(ns, "probe", "default"), DefaultWait, func(p *corev1.Pod) bool {
		return p.Annotations[annotation] == ns
	})

	stored := cluster.CreatePod(t, SimplePod(ns, "real", "default"))
	if got := cluster.GetPod(t, ns, stored.Name).Annotations[annotation]; got != ns {
		t.Fatalf("stored pod annotation %q = %q, want %q", annotation, got, ns)
	}
	outside := cluster.CreatePod(t, SimplePod(other, "outside", "default"))
	if _, ok := outside.Annotations[annotation]; ok {
		t.Fatalf("pod in namespace %s was mutated although the namespaceSelector excludes it", other)
	}
	if n := calls.Load(); n < 2 {
		t.Fatalf("webhook called %d times, want at least 2 (dry-run and real create)", n)
	}
}

func jsonPointerEscape(s string) string {
	out := ""
	for _, r := range s {
		switch r {
		case '~':
			out += "~0"
		case '/':
			out += "~1"
		default:
			out += string(r)
		}
	}
	return out
}
