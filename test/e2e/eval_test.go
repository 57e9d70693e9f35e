package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/test/e2e/internal/awsfake"
)

// TestStoredPodMatchesEval: for the same pod, ServiceAccount and flags, the pod the API
// server stores through the running webhook equals the pod `pod-identity-webhook eval`
// prints, field for field; the identity it got works with the AWS SDK; and the webhook
// counts it in pod_identity_webhook_pod_count{method="sts_web_identity"}.
//
// eval is given what the webhook receives: the API server's pre-webhook pod, taken from
// a dry-run create before the webhook is registered (defaults and the kube-api-access
// volume of the ServiceAccount admission plugin included). eval's result is defaulted
// the same way by a second dry-run create, since the API server defaults the webhook's
// patched pod too (e.g. the projected volume's defaultMode).
func TestStoredPodMatchesEval(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role := RoleARN(ns, "app")
	sa := cluster.CreateServiceAccount(t, ns, "app", map[string]string{
		RoleAnnotation:                             role,
		"eks.amazonaws.com/token-expiration":       "43200",
		"eks.amazonaws.com/sts-regional-endpoints": "true",
	})
	cluster.CreateServiceAccount(t, ns, "probe", map[string]string{RoleAnnotation: RoleARN(ns, "probe")})
	fakes.STS.Trust(role, ServiceAccountSubject(ns, "app"))
	flags := []string{"--aws-default-region=us-west-2", "--token-expiration=7200"}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   ns,
			Name:        "app",
			Labels:      map[string]string{"app": "demo"},
			Annotations: map[string]string{"eks.amazonaws.com/skip-containers": "sidecar"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			InitContainers:     []corev1.Container{{Name: "init", Image: defaultTestImage}},
			Containers: []corev1.Container{
				{Name: "app", Image: defaultTestImage, Env: []corev1.EnvVar{{Name: "EXISTING", Value: "kept"}}},
				{Name: "sidecar", Image: defaultTestImage},
			},
		},
	}

	// 1. The pod the webhook will receive: every admission step but the webhook.
	received, err := cluster.DryRunPod(t.Context(), pod.DeepCopy())
	if err != nil {
		t.Fatalf("dry-run create without the webhook: %v", err)
	}
	received = asSent(received)
	if !NoIdentity(received) {
		t.Fatalf("the pod has an identity before any webhook: %s", podJSON(t, received))
	}

	// 2. eval on it, with the ServiceAccount as the API server has it.
	dir := t.TempDir()
	liveSA, err := cluster.Client.CoreV1().ServiceAccounts(ns).Get(t.Context(), sa.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	liveSA.APIVersion, liveSA.Kind = "v1", "ServiceAccount"
	saFile := writeYAML(t, dir, "sa.yaml", liveSA)
	podFile := writeFile(t, dir, "pod.json", podJSON(t, received))
	out := RunEval(t, append([]string{"--pod", podFile, "--service-account", saFile, "-o", "json"}, flags...)...)
	var evaluated corev1.Pod
	if err := json.Unmarshal(out, &evaluated); err != nil {
		t.Fatalf("eval -o json printed %q: %v", out, err)
	}
	if !WebIdentityInjected(&evaluated, "app", role) {
		t.Fatalf("eval did not inject web identity into container app: %s", out)
	}

	// 3. eval's pod, defaulted by the API server (still no webhook registered).
	predicted, err := cluster.DryRunPod(t.Context(), asSent(&evaluated))
	if err != nil {
		t.Fatalf("dry-run create of eval's pod: %v", err)
	}

	// 4. The real thing, through the webhook.
	wh := StartWebhookAndRegister(t, WebhookOptions{Namespace: ns, Args: flags}, WebhookRegistration{},
		SimplePod(ns, "probe", "probe"), func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", RoleARN(ns, "probe")) })
	countBefore := wh.Metric(t, "pod_identity_webhook_pod_count", map[string]string{"method": "sts_web_identity"})
	cluster.CreatePod(t, pod)
	stored := cluster.GetPod(t, ns, pod.Name)
	if got := wh.Metric(t, "pod_identity_webhook_pod_count", map[string]string{"method": "sts_web_identity"}) - countBefore; got != 1 {
		t.Errorf("pod_identity_webhook_pod_count{method=\"sts_web_identity\"} went up by %v for one pod, want 1", got)
	}

	// 5. Compare.
	want, got := normalizeAPIAccess(predicted), normalizeAPIAccess(stored)
	for _, name := range []string{"init", "app", "sidecar"} {
		w, g := findContainer(want, name), findContainer(got, name)
		if !equality.Semantic.DeepEqual(w.Env, g.Env) {
			t.Errorf("container %s env:\n stored %s\n   eval %s", name, jsonString(g.Env), jsonString(w.Env))
		}
		if !equality.Semantic.DeepEqual(w.VolumeMounts, g.VolumeMounts) {
			t.Errorf("container %s volumeMounts:\n stored %s\n   eval %s", name, jsonString(g.VolumeMounts), jsonString(w.VolumeMounts))
		}
	}
	if !equality.Semantic.DeepEqual(want.Spec.Volumes, got.Spec.Volumes) {
		t.Errorf("volumes:\n stored %s\n   eval %s", jsonString(got.Spec.Volumes), jsonString(want.Spec.Volumes))
	}
	if !equality.Semantic.DeepEqual(want.Labels, got.Labels) || !equality.Semantic.DeepEqual(want.Annotations, got.Annotations) {
		t.Errorf("labels/annotations: stored %v %v, eval %v %v", got.Labels, got.Annotations, want.Labels, want.Annotations)
	}
	if !equality.Semantic.DeepEqual(want.Spec, got.Spec) {
		t.Errorf("pod specs differ:\n stored %s\n   eval %s", jsonString(got.Spec), jsonString(want.Spec))
	}
	if t.Failed() {
		t.FailNow()
	}

	// What the comparison covered: the upstream-shaped injection, with the skip annotation.
	if !WebIdentityInjected(got, "app", role) || !WebIdentityInjected(got, "init", role) {
		t.Fatalf("containers app and init should have web identity: %s", podJSON(t, got))
	}
	if c := findContainer(got, "sidecar"); len(c.Env) != 0 || hasMount(c, IRSAVolume, IRSAMountPath) {
		t.Fatalf("container sidecar is in skip-containers but got %v %v", c.Env, c.VolumeMounts)
	}
	app := findContainer(got, "app")
	wantEnv := map[string]string{"EXISTING": "kept", "AWS_STS_REGIONAL_ENDPOINTS": "regional", "AWS_DEFAULT_REGION": "us-west-2", "AWS_REGION": "us-west-2"}
	for k, v := range wantEnv {
		if got, _ := EnvValue(app, k); got != v {
			t.Fatalf("container app: %s=%q, want %q (env %v)", k, got, v, app.Env)
		}
	}
	if app.Env[0].Name != "EXISTING" {
		t.Fatalf("the pod's own env should come first: %v", app.Env)
	}
	vol := PodVolume(got, IRSAVolume)
	if got.Spec.Volumes[0].Name != IRSAVolume || vol.Projected == nil || len(vol.Projected.Sources) != 1 ||
		vol.Projected.Sources[0].ServiceAccountToken == nil || *vol.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds != 43200 ||
		vol.Projected.Sources[0].ServiceAccountToken.Audience != awsfake.DefaultSTSAudience {
		t.Fatalf("token volume should come first, audience %s, 43200 s (the ServiceAccount's annotation over the flag): %s", awsfake.DefaultSTSAudience, jsonString(got.Spec.Volumes))
	}

	// 6. The identity works: the SDK, with only the container's env, gets credentials.
	res := cluster.ProbePodCredentials(t, stored, "app")
	if !res.OK || res.Source != SourceWebIdentity || res.Region != "us-west-2" {
		t.Fatalf("SDK probe: %+v", res)
	}
	issued, found := fakes.STS.Lookup(res.AccessKeyID)
	if !found || issued.RoleARN != role || issued.Subject != ServiceAccountSubject(ns, "app") {
		t.Fatalf("STS issued %+v (found %v), want role %s for %s", issued, found, role, ServiceAccountSubject(ns, "app"))
	}
	if len(res.Tokens) != 1 || res.Tokens[0].ExpirationSeconds != 43200 {
		t.Fatalf("probe tokens %+v, want one of 43200 s", res.Tokens)
	}
}

// normalizeAPIAccess renames the ServiceAccount admission plugin's kube-api-access-<random>
// volume and its mounts to kube-api-access, so two admissions of one pod compare equal.
func normalizeAPIAccess(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	rename := map[string]bool{}
	for i := range p.Spec.Volumes {
		if strings.HasPrefix(p.Spec.Volumes[i].Name, "kube-api-access-") {
			rename[p.Spec.Volumes[i].Name] = true
			p.Spec.Volumes[i].Name = "kube-api-access"
		}
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			for j := range cs[i].VolumeMounts {
				if rename[cs[i].VolumeMounts[j].Name] {
					cs[i].VolumeMounts[j].Name = "kube-api-access"
				}
			}
		}
	}
	return p
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
