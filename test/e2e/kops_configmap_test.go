package e2e

import (
	"context"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/test/e2e/internal/awsfake"
)

// kopsEntry is one value of the kOps ConfigMap's "config" JSON.
type kopsEntry struct {
	RoleARN         string `json:"RoleARN"`
	Audience        string `json:"Audience,omitempty"`
	UseRegionalSTS  bool   `json:"UseRegionalSTS,omitempty"`
	TokenExpiration int64  `json:"TokenExpiration,omitempty"`
}

// TestKOpsConfigMap: with --watch-config-map, the pod-identity-webhook ConfigMap in
// --namespace maps a ServiceAccount without annotation to a role. Creating, updating
// and deleting the ConfigMap each change what the next pod gets, without a restart;
// after the delete the next pod gets nothing (upstream kept the deleted entries until
// restart). Two more upstream bugs, fixed: a key without "/" (upstream's informer
// panicked) is skipped, and an update that is not valid JSON leaves the previous
// mappings in force.
func TestKOpsConfigMap(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	cluster.CreateServiceAccount(t, ns, "mapped", nil)
	probeRole := RoleARN(ns, "probe")
	cluster.CreateServiceAccount(t, ns, "probe", map[string]string{RoleAnnotation: probeRole})
	first, second := RoleARN(ns, "first"), RoleARN(ns, "second")
	subject := ServiceAccountSubject(ns, "mapped")
	fakes.STS.Trust(first, subject)
	fakes.STS.Trust(second, subject)
	probeMutated := func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", probeRole) }
	wh := StartWebhookAndRegister(t, WebhookOptions{Namespace: ns, Args: []string{"--watch-config-map=true", "--aws-default-region=us-west-2"}},
		WebhookRegistration{}, SimplePod(ns, "probe", "probe"), probeMutated)

	if p, err := cluster.DryRunPod(t.Context(), SimplePod(ns, "before", "mapped")); err != nil || !NoIdentity(p) {
		t.Fatalf("before any ConfigMap, a pod of ServiceAccount mapped got %v (error %v)", p, err)
	}

	cms := cluster.Client.CoreV1().ConfigMaps(ns)
	configMap := func(entries map[string]kopsEntry) *corev1.ConfigMap {
		b, err := json.Marshal(entries)
		if err != nil {
			t.Fatal(err)
		}
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pod-identity-webhook", Namespace: ns}, Data: map[string]string{"config": string(b)}}
	}
	tokenSeconds := func(p *corev1.Pod) int64 {
		v := PodVolume(p, IRSAVolume)
		if v == nil || v.Projected == nil || len(v.Projected.Sources) == 0 || v.Projected.Sources[0].ServiceAccountToken == nil || v.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds == nil {
			return 0
		}
		return *v.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds
	}
	checkProbeRole := func(t *testing.T, pod *corev1.Pod, role string, seconds int64) {
		t.Helper()
		res := cluster.ProbePodCredentials(t, pod, "app")
		issued, found := fakes.STS.Lookup(res.AccessKeyID)
		if !res.OK || !found || issued.RoleARN != role || issued.Subject != subject {
			t.Fatalf("SDK probe %+v; issued %+v (found %v); want role %s for %s", res, issued, found, role, subject)
		}
		if len(res.Tokens) != 1 || res.Tokens[0].ExpirationSeconds != seconds || res.Tokens[0].Audience != awsfake.DefaultSTSAudience {
			t.Fatalf("probe tokens %+v, want one for %s of %d s", res.Tokens, awsfake.DefaultSTSAudience, seconds)
		}
	}

	t.Run("created", func(t *testing.T) {
		// With a key without "/", on which upstream's informer panicked: it is skipped.
		cm := configMap(map[string]kopsEntry{ns + "/mapped": {RoleARN: first, Audience: awsfake.DefaultSTSAudience}, "no-slash": {RoleARN: second}})
		if _, err := cms.Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitForMutation(t, SimplePod(ns, "next", "mapped"), DefaultWait, func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", first) })
		pod := cluster.CreatePod(t, SimplePod(ns, "created", "mapped"))
		app := MustContainer(t, pod, "app")
		if !WebIdentityInjected(pod, "app", first) || tokenSeconds(pod) != TokenExpiration || countEnv(app, "AWS_STS_REGIONAL_ENDPOINTS") != 0 {
			t.Fatalf("want role %s, the flag's %d s, no regional STS: %s", first, TokenExpiration, podJSON(t, pod))
		}
		checkProbeRole(t, pod, first, TokenExpiration)
		if exited, err := wh.Exited(); exited {
			t.Fatalf("the webhook exited (%v) after reading a ConfigMap key without '/'", err)
		}
	})

	t.Run("updated", func(t *testing.T) {
		cm, err := cms.Get(t.Context(), "pod-identity-webhook", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// A wildcard-namespace entry now, with every field.
		cm.Data = configMap(map[string]kopsEntry{"*/mapped": {RoleARN: second, Audience: awsfake.DefaultSTSAudience, UseRegionalSTS: true, TokenExpiration: 3600}}).Data
		if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitForMutation(t, SimplePod(ns, "next", "mapped"), DefaultWait, func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", second) })
		pod := cluster.CreatePod(t, SimplePod(ns, "updated", "mapped"))
		if v, _ := EnvValue(MustContainer(t, pod, "app"), "AWS_STS_REGIONAL_ENDPOINTS"); !WebIdentityInjected(pod, "app", second) || tokenSeconds(pod) != 3600 || v != "regional" {
			t.Fatalf("want role %s, 3600 s, AWS_STS_REGIONAL_ENDPOINTS=regional: %s", second, podJSON(t, pod))
		}
		checkProbeRole(t, pod, second, 3600)
	})

	t.Run("invalid update keeps the previous mappings", func(t *testing.T) {
		cm, err := cms.Get(t.Context(), "pod-identity-webhook", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rejected := map[string]string{"source": "configmap", "outcome": "rejected"}
		before := wh.Metric(t, "pod_identity_webhook_source_updates_total", rejected)
		cm.Data["config"] = `{"*/mapped": {"RoleARN": "` + first + `"` // cut short
		if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, DefaultWait, "the webhook rejects the invalid ConfigMap", func(context.Context) (bool, error) {
			return wh.Metric(t, "pod_identity_webhook_source_updates_total", rejected) > before, nil
		})
		pod := cluster.CreatePod(t, SimplePod(ns, "after-invalid", "mapped"))
		if !WebIdentityInjected(pod, "app", second) || tokenSeconds(pod) != 3600 {
			t.Fatalf("after an invalid update the previous mapping (role %s, 3600 s) should stay: %s", second, podJSON(t, pod))
		}
	})

	t.Run("deleted", func(t *testing.T) {
		if err := cms.Delete(t.Context(), "pod-identity-webhook", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		cluster.WaitForMutation(t, SimplePod(ns, "next", "mapped"), DefaultWait, NoIdentity)
		pod := cluster.CreatePod(t, SimplePod(ns, "deleted", "mapped"))
		if !NoIdentity(pod) {
			t.Fatalf("after the ConfigMap was deleted the pod still got an identity: %s", podJSON(t, pod))
		}
		// The webhook is still there and still mutating: only the mapping went away.
		if p, err := cluster.DryRunPod(t.Context(), SimplePod(ns, "probe-after", "probe")); err != nil || !probeMutated(p) {
			t.Fatalf("a pod of the annotated ServiceAccount is no longer mutated (error %v)", err)
		}
	})
}
