package e2e

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestWebhookSmoke: the real binary, registered with a real MutatingWebhookConfiguration,
// injects IRSA into a pod, and the injected env gets credentials through the AWS SDK.
func TestWebhookSmoke(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role := RoleARN(ns, "app")
	cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: role})
	fakes.STS.Trust(role, ServiceAccountSubject(ns, "app"))
	wh := StartWebhook(t, WebhookOptions{Namespace: ns, Args: []string{"--aws-default-region=us-west-2"}})
	cluster.RegisterWebhook(t, WebhookRegistration{Port: wh.Port, NamespaceSelector: NamespaceOnly(ns)})
	cluster.WaitForMutation(t, SimplePod(ns, "probe", "app"), 30*time.Second, func(p *corev1.Pod) bool {
		return len(p.Spec.Volumes) > 0 && hasEnv(p.Spec.Containers[0], "AWS_ROLE_ARN")
	})
	pod := cluster.CreatePod(t, SimplePod(ns, "app", "app"))
	if !hasEnv(pod.Spec.Containers[0], "AWS_WEB_IDENTITY_TOKEN_FILE") {
		t.Fatalf("stored pod not mutated: %+v", pod.Spec.Containers[0].Env)
	}
	res := cluster.ProbePodCredentials(t, pod, pod.Spec.Containers[0].Name)
	if !res.OK || res.Source != SourceWebIdentity {
		t.Fatalf("SDK probe: %+v", res)
	}
	issued, found := fakes.STS.Lookup(res.AccessKeyID)
	if !found || issued.RoleARN != role {
		t.Fatalf("STS issued %+v (found %v), want role %s", issued, found, role)
	}
}

func hasEnv(c corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}
