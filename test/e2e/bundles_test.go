package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bundleLabel selects bundle ConfigMaps (--bundle-configmap-selector's default).
var bundleLabel = map[string]string{"pod-identity-webhook.io/bundle": "true"}

// exampleBundle reads the files of examples/<name> that a bundle ConfigMap holds.
func exampleBundle(t testing.TB, name string) map[string]string {
	t.Helper()
	dir := filepath.Join(repoRoot, "examples", name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		if e.Name() == "manifest.yaml" || strings.HasSuffix(e.Name(), ".rego") {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = string(b)
		}
	}
	if files["manifest.yaml"] == "" {
		t.Fatalf("%s has no manifest.yaml", dir)
	}
	return files
}

// TestBundleConfigMap: a site rule shipped as a bundle ConfigMap (examples/session-name,
// AWS_ROLE_SESSION_NAME from the pod name) applies to the next pod within seconds, is
// announced by a BundleActivated Event, and reaches STS as the session name. Then a
// broken version of that ConfigMap (a failing _test.rego, and a manifest change that
// would show if it were activated) and a second ConfigMap with Rego that does not parse
// are each rejected with a Warning Event BundleRejected on the ConfigMap, and the rule
// that was working keeps working, unchanged.
func TestBundleConfigMap(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role := RoleARN(ns, "app")
	cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: role})
	fakes.STS.Trust(role, ServiceAccountSubject(ns, "app"))
	wh := StartWebhookAndRegister(t, WebhookOptions{Namespace: ns}, WebhookRegistration{}, SimplePod(ns, "probe", "app"),
		func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", role) })
	if p, err := cluster.DryRunPod(t.Context(), SimplePod(ns, "before", "app")); err != nil || hasEnv(p.Spec.Containers[0], "AWS_ROLE_SESSION_NAME") {
		t.Fatalf("before any bundle ConfigMap: %v (error %v)", p, err)
	}
	sessionName := func(p *corev1.Pod) string {
		v, _ := EnvValue(findContainer(p, "app"), "AWS_ROLE_SESSION_NAME")
		return v
	}
	// The pod name, which the rule makes the session name.
	const podName = "reports-worker-0"
	cms := cluster.Client.CoreV1().ConfigMaps(ns)
	const siteCM = "site-session-name"

	t.Run("site rule applies", func(t *testing.T) {
		start := time.Now()
		_, err := cms.Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: siteCM, Namespace: ns, Labels: bundleLabel},
			Data:       exampleBundle(t, "session-name"),
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cluster.WaitForMutation(t, SimplePod(ns, "next", "app"), 15*time.Second, func(p *corev1.Pod) bool { return sessionName(p) == "next" })
		t.Logf("bundle ConfigMap applied to pods %s after it was created", time.Since(start).Round(time.Millisecond))
		ev := cluster.WaitForEvent(t, ns, "ConfigMap", siteCM, corev1.EventTypeNormal, "BundleActivated", DefaultWait)
		if ev.Source.Component != "pod-identity-webhook" && ev.ReportingController != "pod-identity-webhook" {
			t.Errorf("Event from %+v / %q, want component pod-identity-webhook", ev.Source, ev.ReportingController)
		}

		pod := cluster.CreatePod(t, SimplePod(ns, podName, "app"))
		if !WebIdentityInjected(pod, "app", role) || sessionName(pod) != podName {
			t.Fatalf("want web identity and AWS_ROLE_SESSION_NAME=%s: %s", podName, podJSON(t, pod))
		}
		res := cluster.ProbePodCredentials(t, pod, "app")
		issued, found := fakes.STS.Lookup(res.AccessKeyID)
		if !res.OK || !found || issued.RoleARN != role || issued.SessionName != podName {
			t.Fatalf("SDK probe %+v; STS issued %+v (found %v); want role %s, session %s", res, issued, found, role, podName)
		}
	})

	stillApplies := func(t *testing.T, name string) {
		t.Helper()
		p, err := cluster.DryRunPod(t.Context(), SimplePod(ns, name, "app"))
		if err != nil || sessionName(p) != name {
			t.Fatalf("the working site rule should still apply in full (AWS_ROLE_SESSION_NAME=%s): %v (error %v)", name, p, err)
		}
		pod := cluster.CreatePod(t, SimplePod(ns, name, "app"))
		if !WebIdentityInjected(pod, "app", role) || sessionName(pod) != name {
			t.Fatalf("the working site rule should still apply in full (AWS_ROLE_SESSION_NAME=%s): %s", name, podJSON(t, pod))
		}
	}

	t.Run("broken update keeps the previous version", func(t *testing.T) {
		cm, err := cms.Get(t.Context(), siteCM, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Were this version activated, session names would be cut to 3 characters.
		cm.Data["manifest.yaml"] = strings.Replace(cm.Data["manifest.yaml"], "sessionNameMaxLength: 64", "sessionNameMaxLength: 3", 1)
		if !strings.Contains(cm.Data["manifest.yaml"], "sessionNameMaxLength: 3") {
			t.Fatal("examples/session-name/manifest.yaml no longer sets sessionNameMaxLength: 64")
		}
		cm.Data["session_name_test.rego"] += "\ntest_deliberately_failing if {\n\tsession_name.sanitize(\"a b\") == \"a b\" with input as {\"params\": _params}\n}\n"
		if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		ev := cluster.WaitForEvent(t, ns, "ConfigMap", siteCM, corev1.EventTypeWarning, "BundleRejected", DefaultWait)
		t.Logf("Event %s: %s", ev.Reason, ev.Message)
		if !strings.Contains(ev.Message, "test_deliberately_failing") {
			t.Errorf("the Event should name the failing test: %q", ev.Message)
		}
		stillApplies(t, "after-broken-update")
	})

	t.Run("broken new ConfigMap is left out", func(t *testing.T) {
		const badCM = "site-bad-rego"
		_, err := cms.Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: badCM, Namespace: ns, Labels: bundleLabel},
			Data: map[string]string{
				"manifest.yaml": "apiVersion: pod-identity-webhook.io/v1alpha1\nkind: Bundle\nname: bad\npolicies:\n  - name: labels\n    rule: data.site.bad.mutations\n",
				"bad.rego":      "package site.bad\n\nmutations contains {\"op\": \"set-label\", \"key\": \"bad\", \"value\": \"yes\"} if {\n",
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ev := cluster.WaitForEvent(t, ns, "ConfigMap", badCM, corev1.EventTypeWarning, "BundleRejected", DefaultWait)
		t.Logf("Event %s: %s", ev.Reason, ev.Message)
		if !strings.Contains(ev.Message, "bad.rego") {
			t.Errorf("the Event should name the file: %q", ev.Message)
		}
		for _, e := range cluster.Events(t, ns, badCM) {
			if e.Reason == "BundleActivated" {
				t.Errorf("the broken ConfigMap was announced active: %s", e.Message)
			}
		}
		stillApplies(t, "after-broken-configmap")
		if p := cluster.GetPod(t, ns, "after-broken-configmap"); p.Labels["bad"] != "" {
			t.Fatalf("the broken bundle's label was applied: %v", p.Labels)
		}
		if n := wh.Metric(t, "pod_identity_webhook_bundle_load_failures_total", nil); n < 2 {
			t.Errorf("pod_identity_webhook_bundle_load_failures_total = %v, want at least 2", n)
		}
	})

	// Deleting the working bundle's ConfigMap takes its rule away (the broken one is
	// still there and still left out); the default bundle goes on alone.
	t.Run("deleted", func(t *testing.T) {
		if err := cms.Delete(t.Context(), siteCM, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitForMutation(t, SimplePod(ns, "next-after-delete", "app"), 15*time.Second, func(p *corev1.Pod) bool {
			return WebIdentityInjected(p, "app", role) && sessionName(p) == ""
		})
		pod := cluster.CreatePod(t, SimplePod(ns, "after-delete", "app"))
		if !WebIdentityInjected(pod, "app", role) || hasEnv(pod.Spec.Containers[0], "AWS_ROLE_SESSION_NAME") || pod.Labels["bad"] != "" {
			t.Fatalf("want web identity from the default bundle only: %s", podJSON(t, pod))
		}
	})
}
