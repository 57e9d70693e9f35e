package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestWebhookStopped: what the deploy manifests' webhook configuration does when every
// webhook replica is gone. deploy/README.md ("failurePolicy: Fail for workloads, Ignore
// for kube-system") says: under the first webhook (failurePolicy Fail) pods in the
// covered namespaces are not created while the webhook is down, except pods labelled
// eks.amazonaws.com/skip-pod-identity-webhook, which the objectSelector never sends;
// under the kube-system webhook (Ignore) pods are created without their identity.
//
// The two webhooks are taken from deploy/render.sh base as rendered, only pointed at the
// test's webhook process (url and caBundle) and at one test namespace each instead of
// "everything but pod-identity-webhook and kube-system" and "kube-system".
func TestWebhookStopped(t *testing.T) {
	t.Parallel()
	mwc := ManifestWebhooks(t)
	if len(mwc.Webhooks) != 2 {
		t.Fatalf("deploy/base's MutatingWebhookConfiguration has %d webhooks, want 2 (workloads, kube-system)", len(mwc.Webhooks))
	}
	workload, system := mwc.Webhooks[0], mwc.Webhooks[1]
	if *workload.FailurePolicy != admissionregistrationv1.Fail || *system.FailurePolicy != admissionregistrationv1.Ignore {
		t.Fatalf("deploy/base failurePolicy: %s for %s and %s for %s; deploy/README.md says Fail for workloads and Ignore for kube-system",
			*workload.FailurePolicy, workload.Name, *system.FailurePolicy, system.Name)
	}

	home := cluster.CreateNamespace(t, nil)
	wh := StartWebhook(t, WebhookOptions{Namespace: home})
	nsWork, nsSystem := cluster.CreateNamespace(t, nil), cluster.CreateNamespace(t, nil)
	for _, ns := range []string{nsWork, nsSystem} {
		cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: RoleARN(ns, "app")})
	}
	url := WebhookRegistration{Port: wh.Port}.URL()
	mwc.ObjectMeta = metav1.ObjectMeta{Name: dnsLabel(t.Name(), 50) + ".e2e.pod-identity-webhook.io"}
	for i, ns := range []string{nsWork, nsSystem} {
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: cluster.PKI.WebhookCA.PEM}
		mwc.Webhooks[i].NamespaceSelector = NamespaceOnly(ns)
	}
	if _, err := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(t.Context(), mwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the manifests' MutatingWebhookConfiguration: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, mwc.Name, metav1.DeleteOptions{})
	})
	for _, ns := range []string{nsWork, nsSystem} {
		cluster.WaitForMutation(t, SimplePod(ns, "probe", "app"), DefaultWait, func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", RoleARN(ns, "app")) })
	}

	if err := wh.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	t.Run("Fail: pod rejected", func(t *testing.T) {
		_, err := cluster.Client.CoreV1().Pods(nsWork).Create(t.Context(), SimplePod(nsWork, "while-down", "app"), metav1.CreateOptions{})
		if err == nil {
			t.Fatal("pod created while the webhook was down, under failurePolicy Fail")
		}
		if !strings.Contains(err.Error(), `failed calling webhook "`+workload.Name+`"`) {
			t.Fatalf("the error should name the webhook %s: %v", workload.Name, err)
		}
		t.Logf("refused: %v", err)
		if _, err := cluster.Client.CoreV1().Pods(nsWork).Get(t.Context(), "while-down", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("the refused pod exists (error %v)", err)
		}
	})

	t.Run("Fail: skip label still admitted", func(t *testing.T) {
		pod := SimplePod(nsWork, "skipped", "app")
		pod.Labels = map[string]string{"eks.amazonaws.com/skip-pod-identity-webhook": "true"}
		if stored := cluster.CreatePod(t, pod); !NoIdentity(stored) {
			t.Fatalf("the skip-labelled pod should be created without an identity: %s", podJSON(t, stored))
		}
	})

	t.Run("Ignore: pod created without identity", func(t *testing.T) {
		if stored := cluster.CreatePod(t, SimplePod(nsSystem, "while-down", "app")); !NoIdentity(stored) {
			t.Fatalf("want an unmutated pod: %s", podJSON(t, stored))
		}
	})
}
