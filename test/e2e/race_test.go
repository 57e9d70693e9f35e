package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceAccountWatchLag is how late the webhook's ServiceAccount informer hears about
// changes in the creation-race tests: well beyond the pod creation (under a second),
// so its cache cannot have the new ServiceAccount when the pod is admitted.
const serviceAccountWatchLag = 3 * time.Second

// TestServiceAccountCreatedAfterPod is the creation race (upstream #174): a pod whose
// ServiceAccount appears only while the pod is being created, before the webhook's
// cache has heard of it.
//
// The ServiceAccount admission plugin, which runs before webhooks, refuses a pod whose
// ServiceAccount does not exist, looking it up once, except for "default", which it
// retries for 1-2 s (the controller that creates it may be late). So the pod here uses
// "default" in a namespace that has none yet: the create starts, the ServiceAccount is
// created ~100 ms later with a role, and the plugin's retry lets the create through.
// The webhook reads the cluster through a proxy that delays its ServiceAccount watch
// events by serviceAccountWatchLag, as a busy API server or informer does, so its cache
// deterministically misses the new ServiceAccount:
//
//   - with --service-account-lookup-grace-period=2s it looks the ServiceAccount up and
//     mutates the pod;
//   - with 0 (upstream's default) it does not wait and the pod is stored without an
//     identity; once the cache catches up, the next pod gets it.
func TestServiceAccountCreatedAfterPod(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, grace string
		mutated     bool
	}{
		{"grace period 2s", "2s", true},
		{"grace period 0", "0s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := cluster.CreateBareNamespace(t)
			role, probeRole := RoleARN(ns, "default"), RoleARN(ns, "probe")
			cluster.CreateServiceAccount(t, ns, "probe", map[string]string{RoleAnnotation: probeRole})
			proxy := StartAPIProxy(t, serviceAccountWatchLag)
			wh := StartWebhookAndRegister(t, WebhookOptions{Namespace: ns, Args: []string{
				"--kubeconfig=" + proxy.Kubeconfig,
				"--service-account-lookup-grace-period=" + tc.grace,
			}}, WebhookRegistration{}, SimplePod(ns, "probe", "probe"), func(p *corev1.Pod) bool {
				return WebIdentityInjected(p, "app", probeRole)
			})
			if proxy.ServiceAccountWatches() == 0 {
				t.Fatal("the webhook's ServiceAccount watch did not go through the delaying proxy")
			}

			stored := createPodThenServiceAccount(t, SimplePod(ns, "app", "default"), role)
			if tc.mutated {
				if !WebIdentityInjected(stored, "app", role) {
					t.Fatalf("stored pod not mutated: %s", podJSON(t, stored))
				}
				if n := wh.Metric(t, "pod_identity_webhook_serviceaccount_fetches_total", map[string]string{"outcome": "found"}); n < 1 {
					t.Fatalf("pod mutated, but the webhook made no successful ServiceAccount GET (fetches found = %v): it should not have known the ServiceAccount from its cache", n)
				}
				fakes.STS.Trust(role, ServiceAccountSubject(ns, "default"))
				res := cluster.ProbePodCredentials(t, stored, "app")
				if issued, found := fakes.STS.Lookup(res.AccessKeyID); !res.OK || !found || issued.RoleARN != role {
					t.Fatalf("SDK probe %+v; issued %+v (found %v), want role %s", res, issued, found, role)
				}
				return
			}
			if !NoIdentity(stored) {
				t.Fatalf("with no grace period the pod created before its ServiceAccount was cached should not be mutated: %s", podJSON(t, stored))
			}
			if n := wh.Metric(t, "pod_identity_webhook_missing_sa_count", nil); n < 1 {
				t.Fatalf("pod_identity_webhook_missing_sa_count = %v, want at least 1", n)
			}
			// The miss was the cache's lag and nothing else: once the watch event
			// arrives, the same pod is mutated.
			cluster.WaitForMutation(t, SimplePod(ns, "app-2", "default"), DefaultWait, func(p *corev1.Pod) bool {
				return WebIdentityInjected(p, "app", role)
			})
		})
	}
}

// createPodThenServiceAccount starts creating pod (whose ServiceAccount, "default", must
// not exist yet), creates the ServiceAccount with role ~100 ms later while the create is
// still in flight, and returns the stored pod.
func createPodThenServiceAccount(t *testing.T, pod *corev1.Pod, role string) *corev1.Pod {
	t.Helper()
	if pod.Spec.ServiceAccountName != "default" {
		t.Fatalf("only the default ServiceAccount may be created after its pod (the ServiceAccount admission plugin looks others up once)")
	}
	type result struct {
		pod *corev1.Pod
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		p, err := cluster.Client.CoreV1().Pods(pod.Namespace).Create(context.WithoutCancel(t.Context()), pod, metav1.CreateOptions{})
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("the pod create returned before its ServiceAccount existed (pod %v, error %v)", r.pod != nil, r.err)
	case <-time.After(100 * time.Millisecond): // the point of the scenario, not a wait for a condition
	}
	cluster.CreateServiceAccount(t, pod.Namespace, "default", map[string]string{RoleAnnotation: role})
	saCreated := time.Since(start)
	var r result
	select {
	case r = <-done:
	case <-time.After(DefaultWait):
		t.Fatalf("pod create did not return within %s", DefaultWait)
	}
	if r.err != nil {
		t.Fatalf("creating pod %s/%s (ServiceAccount created %s after the create started): %v", pod.Namespace, pod.Name, saCreated.Round(time.Millisecond), r.err)
	}
	t.Logf("ServiceAccount created %s after the pod create started; the create returned after %s",
		saCreated.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return cluster.GetPod(t, pod.Namespace, pod.Name)
}
