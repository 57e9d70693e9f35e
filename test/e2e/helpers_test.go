package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Default timeouts of the wait helpers.
const (
	DefaultWait  = 30 * time.Second
	pollInterval = 100 * time.Millisecond
)

// Eventually polls cond every 100 ms until it reports done, returns an error that is
// not worth retrying (wrap it with Permanent), or timeout passes; then it fails the test
// with what and the last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (done bool, err error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	var last error
	for {
		done, err := cond(ctx)
		if done {
			return
		}
		if pe, ok := err.(permanentError); ok {
			t.Fatalf("%s: %v", what, pe.err)
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not done after %s (last error: %v)", what, time.Since(start).Round(time.Millisecond), last)
		case <-time.After(pollInterval):
		}
	}
}

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }

// Permanent makes Eventually stop and fail at once with err.
func Permanent(err error) error { return permanentError{err} }

// WaitForObject polls get until ok accepts the object, and returns it.
func WaitForObject[T any](t testing.TB, timeout time.Duration, what string, get func(ctx context.Context) (T, error), ok func(T) bool) T {
	t.Helper()
	var obj T
	Eventually(t, timeout, what, func(ctx context.Context) (bool, error) {
		o, err := get(ctx)
		if err != nil {
			return false, err
		}
		obj = o
		return ok(o), nil
	})
	return obj
}

// dnsLabel turns s (a test name) into a DNS-1123 label of at most max characters.
func dnsLabel(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > max {
		out = strings.TrimRight(out[:max], "-")
	}
	if out == "" {
		out = "e2e"
	}
	return out
}

// CreateNamespace creates a namespace named after the test (generateName) with its
// "default" ServiceAccount (no controller-manager creates it), and returns the name.
func (c *Cluster) CreateNamespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: dnsLabel(t.Name(), 40) + "-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	c.CreateServiceAccount(t, ns.Name, "default", nil)
	return ns.Name
}

// CreateServiceAccount creates a ServiceAccount with the given annotations.
func (c *Cluster) CreateServiceAccount(t testing.TB, ns, name string, annotations map[string]string) *corev1.ServiceAccount {
	t.Helper()
	sa, err := c.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating ServiceAccount %s/%s: %v", ns, name, err)
	}
	return sa
}

// CreatePod creates pod and returns the pod as stored (after every admission plugin and
// webhook ran).
func (c *Cluster) CreatePod(t testing.TB, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	stored, err := c.Client.CoreV1().Pods(pod.Namespace).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", pod.Namespace, pod.Name+pod.GenerateName, err)
	}
	return stored
}

// GetPod reads a pod back from the apiserver.
func (c *Cluster) GetPod(t testing.TB, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting pod %s/%s: %v", ns, name, err)
	}
	return p
}

// DryRunPod creates pod with dryRun=All: every admission step runs, nothing is stored.
func (c *Cluster) DryRunPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	return c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// SimplePod is a one-container pod (image never pulled: there is no kubelet).
func SimplePod(ns, name, serviceAccount string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: serviceAccount,
			Containers:         []corev1.Container{{Name: "app", Image: "public.ecr.aws/docker/library/busybox:1.36"}},
		},
	}
}

// WebhookRegistration describes a MutatingWebhookConfiguration for a webhook listening
// on https://127.0.0.1:<Port><Path>. Zero fields get the defaults noted.
type WebhookRegistration struct {
	Name                    string // default: derived from the test name
	WebhookName             string // the webhook's name in the configuration; default pod-identity-webhook.amazonaws.com
	Port                    int    // required
	Path                    string // default /mutate
	CABundle                []byte // default: the harness webhook CA
	NamespaceSelector       *metav1.LabelSelector
	ObjectSelector          *metav1.LabelSelector
	FailurePolicy           admissionregistrationv1.FailurePolicyType      // default Fail
	ReinvocationPolicy      admissionregistrationv1.ReinvocationPolicyType // default IfNeeded
	AdmissionReviewVersions []string                                       // default v1, v1beta1
	Operations              []admissionregistrationv1.OperationType        // default CREATE
	TimeoutSeconds          int32                                          // default 10
	MatchPolicy             admissionregistrationv1.MatchPolicyType        // default Equivalent
	SideEffects             admissionregistrationv1.SideEffectClass        // default None
}

// NamespaceOnly selects the one namespace ns (by its kubernetes.io/metadata.name label),
// so that concurrent tests do not see each other's webhooks.
func NamespaceOnly(ns string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
}

// URL is the webhook's clientConfig.url.
func (r WebhookRegistration) URL() string {
	p := r.Path
	if p == "" {
		p = "/mutate"
	}
	return fmt.Sprintf("https://127.0.0.1:%d%s", r.Port, p)
}

// RegisterWebhook creates the MutatingWebhookConfiguration (deleted when the test ends).
// It does not wait: follow it with WaitForMutation.
func (c *Cluster) RegisterWebhook(t testing.TB, r WebhookRegistration) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	if r.Port == 0 {
		t.Fatal("RegisterWebhook: Port is required")
	}
	name := r.Name
	if name == "" {
		name = dnsLabel(t.Name(), 50) + ".e2e.pod-identity-webhook.io"
	}
	def := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	url := r.URL()
	ca := r.CABundle
	if ca == nil {
		ca = c.PKI.WebhookCA.PEM
	}
	versions := r.AdmissionReviewVersions
	if versions == nil {
		versions = []string{"v1", "v1beta1"}
	}
	ops := r.Operations
	if ops == nil {
		ops = []admissionregistrationv1.OperationType{admissionregistrationv1.Create}
	}
	timeout := r.TimeoutSeconds
	if timeout == 0 {
		timeout = 10
	}
	failure := admissionregistrationv1.FailurePolicyType(def(string(r.FailurePolicy), string(admissionregistrationv1.Fail)))
	reinvoke := admissionregistrationv1.ReinvocationPolicyType(def(string(r.ReinvocationPolicy), string(admissionregistrationv1.IfNeededReinvocationPolicy)))
	match := admissionregistrationv1.MatchPolicyType(def(string(r.MatchPolicy), string(admissionregistrationv1.Equivalent)))
	side := admissionregistrationv1.SideEffectClass(def(string(r.SideEffects), string(admissionregistrationv1.SideEffectClassNone)))
	scope := admissionregistrationv1.NamespacedScope
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    def(r.WebhookName, "pod-identity-webhook.amazonaws.com"),
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope}}},
			FailurePolicy:           &failure,
			MatchPolicy:             &match,
			NamespaceSelector:       r.NamespaceSelector,
			ObjectSelector:          r.ObjectSelector,
			SideEffects:             &side,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: versions,
			ReinvocationPolicy:      &reinvoke,
		}},
	}
	created, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(t.Context(), mwc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating MutatingWebhookConfiguration %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting MutatingWebhookConfiguration %s: %v", name, err)
		}
	})
	return created
}

// WaitForMutation dry-run-creates probe until mutated accepts the result, so a test
// knows the webhook is registered, reachable and answering before it creates real pods.
// Errors from the webhook call (not reachable yet, TLS) are retried until timeout; an
// Invalid pod fails at once.
// It returns the mutated dry-run pod.
func (c *Cluster) WaitForMutation(t testing.TB, probe *corev1.Pod, timeout time.Duration, mutated func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	start := time.Now()
	p := WaitForObject(t, timeout, fmt.Sprintf("webhook mutation of dry-run pod %s/%s", probe.Namespace, probe.Name),
		func(ctx context.Context) (*corev1.Pod, error) {
			p, err := c.DryRunPod(ctx, probe.DeepCopy())
			if apierrors.IsInvalid(err) {
				// The webhook answered, and its mutation (or the probe) is invalid: waiting
				// will not help.
				return nil, Permanent(err)
			}
			return p, err
		}, mutated)
	t.Logf("webhook live after %s", time.Since(start).Round(time.Millisecond))
	return p
}

// WaitHTTPOK polls GET url (plain HTTP, e.g. a webhook's /readyz on its metrics port)
// until it answers 200. If proc exits first, the test fails at once with its log.
func WaitHTTPOK(t testing.TB, proc *Process, url string, timeout time.Duration) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	Eventually(t, timeout, "GET "+url, func(ctx context.Context) (bool, error) {
		if proc != nil {
			if exited, err := proc.Exited(); exited {
				return false, Permanent(fmt.Errorf("%s exited (%v) before it was ready; log %s:\n%s", proc.Name, err, proc.LogPath, proc.Tail(60)))
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("status %s", resp.Status)
		}
		return true, nil
	})
}

var (
	buildMu    sync.Mutex
	builtBins  = map[string]string{}
	buildTimes = map[string]time.Duration{}
)

// BuildBinary builds the main package pkg (a path relative to the repository root, e.g.
// "./cmd/pod-identity-webhook") once per test run and returns the binary's path.
// For the webhook, $WEBHOOK_BIN (make e2e sets it to the binary `make build` just
// made) is used instead when set.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := builtBins[pkg]; ok {
		return bin
	}
	if bin := os.Getenv("WEBHOOK_BIN"); pkg == WebhookPackage && bin != "" {
		if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			t.Fatalf("WEBHOOK_BIN=%s is not an executable file (%v)", bin, err)
		}
		builtBins[pkg] = bin
		t.Logf("using WEBHOOK_BIN=%s for %s", bin, pkg)
		return bin
	}
	out := filepath.Join(cluster.Dir, "bin", path.Base(pkg))
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	builtBins[pkg], buildTimes[pkg] = out, time.Since(start)
	t.Logf("built %s in %s", pkg, buildTimes[pkg].Round(time.Millisecond))
	return out
}
