package e2e

import (
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestReinvocation: another mutating webhook that runs after ours adds a container (a
// sidecar injector: Istio, Vault, Linkerd). With reinvocationPolicy IfNeeded on ours,
// the API server calls ours again and the added container gets the identity env and
// mount too, with nothing duplicated; with Never it does not. This is why the deploy
// manifests use IfNeeded (deploy/README.md, "Other webhook fields").
//
// The API server runs the webhooks of all MutatingWebhookConfigurations in the order of
// the configurations' names, so ours is registered as "a-..." and the injector as "b-...".
func TestReinvocation(t *testing.T) {
	t.Parallel()
	const sidecar = "late-sidecar"
	injector := StartStubWebhook(t, func(_ *admissionv1.AdmissionRequest, pod *corev1.Pod) []PatchOp {
		if findContainer(pod, sidecar) != nil {
			return nil
		}
		return []PatchOp{{Op: "add", Path: "/spec/containers/-", Value: map[string]any{"name": sidecar, "image": defaultTestImage}}}
	})
	home := cluster.CreateNamespace(t, nil)
	wh := StartWebhook(t, WebhookOptions{Namespace: home, Args: []string{"--aws-default-region=us-west-2"}})

	for _, policy := range []admissionregistrationv1.ReinvocationPolicyType{admissionregistrationv1.IfNeededReinvocationPolicy, admissionregistrationv1.NeverReinvocationPolicy} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			ns := cluster.CreateNamespace(t, nil)
			role := RoleARN(ns, "app")
			cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: role})
			fakes.STS.Trust(role, ServiceAccountSubject(ns, "app"))
			cluster.RegisterWebhook(t, WebhookRegistration{
				Name: "a-" + ns + ".e2e.pod-identity-webhook.io", Port: wh.Port,
				NamespaceSelector: NamespaceOnly(ns), ReinvocationPolicy: policy,
			})
			cluster.RegisterWebhook(t, WebhookRegistration{
				Name: "b-" + ns + ".e2e.pod-identity-webhook.io", WebhookName: "sidecar-injector.e2e.pod-identity-webhook.io", Port: injector.Port,
				NamespaceSelector: NamespaceOnly(ns), ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy,
				AdmissionReviewVersions: []string{"v1"},
			})
			cluster.WaitForMutation(t, SimplePod(ns, "probe", "app"), DefaultWait, func(p *corev1.Pod) bool {
				return findContainer(p, sidecar) != nil && WebIdentityInjected(p, "app", role)
			})

			pod := cluster.CreatePod(t, SimplePod(ns, "pod", "app"))
			late := MustContainer(t, pod, sidecar)
			if !WebIdentityInjected(pod, "app", role) {
				t.Fatalf("container app should have web identity: %s", podJSON(t, pod))
			}
			if policy == admissionregistrationv1.NeverReinvocationPolicy {
				if len(late.Env) != 0 || hasMount(late, IRSAVolume, IRSAMountPath) {
					t.Fatalf("without reinvocation the injected container should have no identity, has env %v mounts %v", late.Env, late.VolumeMounts)
				}
				return
			}
			if !WebIdentityInjected(pod, sidecar, role) {
				t.Fatalf("with IfNeeded the injected container should get web identity on reinvocation: %s", podJSON(t, pod))
			}
			app := MustContainer(t, pod, "app")
			for _, name := range []string{EnvRoleARN, EnvWebIdentityToken, "AWS_REGION", "AWS_DEFAULT_REGION"} {
				if countEnv(app, name) != 1 || countEnv(late, name) != 1 {
					t.Fatalf("%s appears %d times in app and %d in %s, want once each", name, countEnv(app, name), countEnv(late, name), sidecar)
				}
			}
			if n := countVolumes(pod, IRSAVolume); n != 1 || len(app.VolumeMounts) != 2 || len(late.VolumeMounts) != 2 {
				t.Fatalf("%d %s volumes (want 1), mounts app %v, %s %v (want the token and kube-api-access each)", n, IRSAVolume, app.VolumeMounts, sidecar, late.VolumeMounts)
			}
			res := cluster.ProbePodCredentials(t, pod, sidecar)
			if issued, found := fakes.STS.Lookup(res.AccessKeyID); !res.OK || !found || issued.RoleARN != role {
				t.Fatalf("SDK probe in %s: %+v; issued %+v (found %v)", sidecar, res, issued, found)
			}
		})
	}
}
