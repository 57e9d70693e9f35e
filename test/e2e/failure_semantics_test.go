package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// The failure semantics of docs/hardening.md, end to end. Bundle ConfigMap deletion
// (its rules go away in the next generation) is TestBundleConfigMap/deleted.

// loopingRego is a rule that would run for minutes (27 million iterations) unless the
// per-request deadline (--policy-timeout) cuts it.
const loopingRego = `
xs contains [a, b, c] if {
	some a in numbers.range(1, 300)
	some b in numbers.range(1, 300)
	some c in numbers.range(1, 300)
}
`

// TestPolicyRunTimeFailure: what a pod gets when a policy fails at run time, through
// the API server. A site bundle ConfigMap holds three policies:
//
//   - image-rewrite (onError unset, so skip) changes the container image, which its
//     bundle was not granted: the guardrails refuse it at run time;
//   - team-label sets a label;
//   - slow-deny (onError: deny), only for pods labelled slow=true, loops until the
//     per-request deadline cuts it.
//
// An ordinary pod is admitted with the default bundle's identity and team-label's
// label, its image untouched; the failure is counted in
// pod_identity_webhook_policy_errors_total{bundle="site",policy="image-rewrite"} and
// named in the webhook's log line. A pod labelled slow=true is rejected, and the
// message the client gets names the policy and the deadline.
func TestPolicyRunTimeFailure(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role := RoleARN(ns, "app")
	cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: role})
	wh := StartWebhookAndRegister(t, WebhookOptions{Namespace: ns, Args: []string{"--policy-timeout=500ms"}}, WebhookRegistration{},
		SimplePod(ns, "probe", "app"), func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", role) })

	_, err := cluster.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "site-failures", Namespace: ns, Labels: bundleLabel},
		Data: map[string]string{
			"manifest.yaml": `apiVersion: pod-identity-webhook.io/v1alpha1
kind: Bundle
name: site
policies:
  - name: image-rewrite
    rule: data.site.failures.image
  - name: team-label
    rule: data.site.failures.label
  - name: slow-deny
    match:
      - name: labelled-slow
        expression: has(object.metadata.labels) && 'slow' in object.metadata.labels && object.metadata.labels['slow'] == 'true'
    rule: data.site.failures.slow
    onError: deny
`,
			"failures.rego": `package site.failures

image := [{"op": "json-patch", "patch": [{"op": "replace", "path": "/spec/containers/0/image", "value": "registry.example.com/evil:latest"}]}]

label := [{"op": "set-label", "key": "team", "value": "payments"}]

slow := [{"op": "set-label", "key": "n", "value": format_int(count(xs), 10)}]
` + loopingRego,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cluster.WaitForMutation(t, SimplePod(ns, "next", "app"), DefaultWait, func(p *corev1.Pod) bool { return p.Labels["team"] == "payments" })

	t.Run("skip: admitted with the other policies' changes", func(t *testing.T) {
		before := wh.Metric(t, "pod_identity_webhook_policy_errors_total", map[string]string{"bundle": "site", "policy": "image-rewrite"})
		pod := cluster.CreatePod(t, SimplePod(ns, "ordinary", "app"))
		if !WebIdentityInjected(pod, "app", role) || pod.Labels["team"] != "payments" {
			t.Fatalf("want the default bundle's identity and the team label: %s", podJSON(t, pod))
		}
		if img := pod.Spec.Containers[0].Image; img != defaultTestImage {
			t.Fatalf("the refused policy changed the image to %q", img)
		}
		if got := wh.Metric(t, "pod_identity_webhook_policy_errors_total", map[string]string{"bundle": "site", "policy": "image-rewrite"}) - before; got < 1 {
			t.Errorf("pod_identity_webhook_policy_errors_total{bundle=site,policy=image-rewrite} went up by %v, want at least 1", got)
		}
		Eventually(t, 10*time.Second, "the webhook log line naming the failed policy", func(context.Context) (bool, error) {
			for _, line := range strings.Split(wh.Log(), "\n") {
				if strings.Contains(line, `pod="ordinary"`) && strings.Contains(line, "site/image-rewrite") {
					t.Logf("log: %s", line)
					return true, nil
				}
			}
			return false, nil
		})
	})

	t.Run("deny: rejected, naming the policy", func(t *testing.T) {
		pod := SimplePod(ns, "slow", "app")
		pod.Labels = map[string]string{"slow": "true"}
		start := time.Now()
		_, err := cluster.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
		if err == nil {
			t.Fatal("the pod was created although its onError: deny policy failed")
		}
		t.Logf("refused after %s: %v", time.Since(start).Round(time.Millisecond), err)
		for _, want := range []string{"denied the request", "policy site/slow-deny failed", "per-request deadline"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error should contain %q: %v", want, err)
			}
		}
		if _, err := cluster.Client.CoreV1().Pods(ns).Get(t.Context(), "slow", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("the refused pod exists (error %v)", err)
		}
	})
}

// TestAPIServerUnreachable: the webhook loses the API server after it started (its
// connections go through a TCP proxy that the test cuts; the API server itself stays
// up and keeps calling the webhook). The webhook keeps serving from its caches:
//
//   - /readyz and /healthz stay 200 (readiness reflects the caches having synced
//     once, not the API server being reachable now);
//   - a pod of a ServiceAccount cached before the cut gets its identity, and the
//     active bundle generation (a site bundle ConfigMap) still applies;
//   - a ServiceAccount created during the outage is not in the cache, and the
//     fallback GET fails with a connection error (not NotFound): after the grace
//     period the pod is admitted as if it had no ServiceAccount, the error is logged
//     and counted in pod_identity_webhook_serviceaccount_fetches_total{outcome="error"};
//   - but identities that do not depend on the ServiceAccount object still apply: the
//     kOps ConfigMap mapping (cached) and the identities file (local) of ServiceAccounts
//     created during the outage.
//
// When the proxy is back, the next pod of the ServiceAccount created during the outage
// gets its identity (the fallback GET succeeds; the informers re-list meanwhile).
func TestAPIServerUnreachable(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role := RoleARN(ns, "app")
	cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: role})
	mappedRole := RoleARN(ns, "late-mapped")
	kops, err := json.Marshal(map[string]kopsEntry{ns + "/late-mapped": {RoleARN: mappedRole}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-identity-webhook", Namespace: ns}, Data: map[string]string{"config": string(kops)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "site-session-name", Namespace: ns, Labels: bundleLabel}, Data: exampleBundle(t, "session-name"),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	idFile := writeFile(t, t.TempDir(), "identities.json", []byte(identitiesJSON(t, ns, "late-cc")))

	proxy := startCuttableProxy(t)
	wh := StartWebhookAndRegister(t, WebhookOptions{Namespace: ns, Args: []string{
		"--kubeconfig=" + proxy.Kubeconfig,
		"--watch-config-map=true",
		"--watch-container-credentials-config=" + idFile,
		"--service-account-lookup-grace-period=2s",
		"--aws-default-region=us-west-2",
	}}, WebhookRegistration{}, SimplePod(ns, "probe", "app"), func(p *corev1.Pod) bool {
		v, _ := EnvValue(findContainer(p, "app"), "AWS_ROLE_SESSION_NAME")
		return WebIdentityInjected(p, "app", role) && v == "probe"
	})

	proxy.Cut()
	t.Log("the webhook's connections to the API server are cut")
	// Long enough for the informers to notice (their watches end at once) and fail to
	// list again.
	time.Sleep(2 * time.Second)

	t.Run("readyz stays 200", func(t *testing.T) {
		for _, path := range []string{"/readyz", "/healthz"} {
			resp, err := http.Get(wh.MetricsURL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s during the outage: %s, want 200", path, resp.Status)
			}
		}
	})

	t.Run("cached ServiceAccount and bundle still apply", func(t *testing.T) {
		pod := cluster.CreatePod(t, SimplePod(ns, "cached", "app"))
		v, _ := EnvValue(findContainer(pod, "app"), "AWS_ROLE_SESSION_NAME")
		if !WebIdentityInjected(pod, "app", RoleARN(ns, "app")) || v != "cached" {
			t.Fatalf("want web identity and the session name from the cached state: %s", podJSON(t, pod))
		}
	})

	late := RoleARN(ns, "late")
	cluster.CreateServiceAccount(t, ns, "late", map[string]string{RoleAnnotation: late})
	cluster.CreateServiceAccount(t, ns, "late-mapped", nil)
	cluster.CreateServiceAccount(t, ns, "late-cc", nil)

	t.Run("unreadable ServiceAccount: evaluated without it", func(t *testing.T) {
		errorsBefore := wh.Metric(t, "pod_identity_webhook_serviceaccount_fetches_total", map[string]string{"outcome": "error"})
		start := time.Now()
		pod := cluster.CreatePod(t, SimplePod(ns, "late-pod", "late"))
		took := time.Since(start)
		if !NoIdentity(pod) {
			t.Fatalf("want no identity (the ServiceAccount could not be read): %s", podJSON(t, pod))
		}
		if took < 2*time.Second {
			t.Errorf("admitted after %s, before the 2 s grace period ended", took)
		}
		if got := wh.Metric(t, "pod_identity_webhook_serviceaccount_fetches_total", map[string]string{"outcome": "error"}) - errorsBefore; got < 1 {
			t.Errorf("pod_identity_webhook_serviceaccount_fetches_total{outcome=error} went up by %v, want at least 1", got)
		}
		Eventually(t, 10*time.Second, "the log line of the unreadable ServiceAccount", func(context.Context) (bool, error) {
			for _, line := range strings.Split(wh.Log(), "\n") {
				if strings.Contains(line, "the pod was evaluated without it") && strings.Contains(line, `serviceAccount="late"`) {
					t.Logf("log: %s", line)
					return true, nil
				}
			}
			return false, nil
		})
	})

	t.Run("kOps ConfigMap mapping still applies", func(t *testing.T) {
		pod := cluster.CreatePod(t, SimplePod(ns, "late-mapped-pod", "late-mapped"))
		if !WebIdentityInjected(pod, "app", mappedRole) {
			t.Fatalf("want the role of the cached kOps mapping: %s", podJSON(t, pod))
		}
	})

	t.Run("identities file still applies", func(t *testing.T) {
		pod := cluster.CreatePod(t, SimplePod(ns, "late-cc-pod", "late-cc"))
		if !ContainerCredentialsInjected(pod, "app") {
			t.Fatalf("want container credentials from the identities file: %s", podJSON(t, pod))
		}
	})

	t.Run("recovers", func(t *testing.T) {
		proxy.Restore(t)
		start := time.Now()
		cluster.WaitForMutation(t, SimplePod(ns, "late-again", "late"), 60*time.Second, func(p *corev1.Pod) bool {
			return WebIdentityInjected(p, "app", late)
		})
		t.Logf("the ServiceAccount created during the outage applies %s after the proxy came back", time.Since(start).Round(time.Millisecond))
	})
}

// cuttableProxy is a TCP proxy to the test API server (TLS passes through, so the
// webhook authenticates to the API server itself) that the test can cut: Cut closes
// the listener and every connection, so the webhook's watches end and every new
// connection is refused; Restore listens again on the same address.
type cuttableProxy struct {
	Kubeconfig string
	addr       string
	target     string
	mu         sync.Mutex
	l          net.Listener
	conns      map[net.Conn]bool
	wg         sync.WaitGroup
}

func startCuttableProxy(t testing.TB) *cuttableProxy {
	t.Helper()
	u, err := url.Parse(cluster.Host)
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{target: u.Host, conns: map[net.Conn]bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	p.serve(l)
	cfg, err := clientcmd.LoadFromFile(cluster.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + p.addr
	}
	p.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *cuttableProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.pipe(c) })
		}
	})
}

func (p *cuttableProxy) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.l == nil { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	copy := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go copy(up, c)
	go copy(c, up)
	<-done
	c.Close()
	up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Cut closes the listener and every proxied connection.
func (p *cuttableProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Restore listens again on the proxy's address.
func (p *cuttableProxy) Restore(t testing.TB) {
	t.Helper()
	var l net.Listener
	Eventually(t, 10*time.Second, "listening again on "+p.addr, func(context.Context) (bool, error) {
		var err error
		l, err = net.Listen("tcp", p.addr)
		return err == nil, err
	})
	p.serve(l)
}
