package e2e

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestAdmissionReviewV1beta1Only: registered the way upstream's manifest did,
// admissionReviewVersions [v1beta1] only (#225, #205, #132), the webhook still
// mutates: the API server sends admission.k8s.io/v1beta1 reviews, and the webhook must
// answer in that version or the API server refuses the response.
func TestAdmissionReviewV1beta1Only(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role := RoleARN(ns, "app")
	cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: role})
	fakes.STS.Trust(role, ServiceAccountSubject(ns, "app"))
	StartWebhookAndRegister(t, WebhookOptions{Namespace: ns}, WebhookRegistration{AdmissionReviewVersions: []string{"v1beta1"}},
		SimplePod(ns, "probe", "app"), func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", role) })
	pod := cluster.CreatePod(t, SimplePod(ns, "app", "app"))
	if !WebIdentityInjected(pod, "app", role) {
		t.Fatalf("stored pod not mutated: %s", podJSON(t, pod))
	}
	res := cluster.ProbePodCredentials(t, pod, "app")
	if issued, found := fakes.STS.Lookup(res.AccessKeyID); !res.OK || !found || issued.RoleARN != role {
		t.Fatalf("SDK probe %+v; issued %+v (found %v)", res, issued, found)
	}
}
