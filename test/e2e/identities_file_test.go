package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/test/e2e/internal/awsfake"
)

// ContainerCredentialsInjected says whether container ctr of pod got EKS Pod Identity:
// the env, the mount, the token volume and the pod-identity label.
func ContainerCredentialsInjected(pod *corev1.Pod, ctr string) bool {
	c := findContainer(pod, ctr)
	uri, _ := EnvValue(c, EnvContainerFullURI)
	tf, _ := EnvValue(c, EnvContainerAuthFile)
	return c != nil && uri == CCFullURI && tf == CCTokenFile && hasMount(c, CCVolume, CCMountPath) &&
		PodVolume(pod, CCVolume) != nil && pod.Labels[PodIdentityLabel] == "enabled"
}

// identitiesJSON is an identities file listing the ServiceAccounts sas of namespace ns.
func identitiesJSON(t testing.TB, ns string, sas ...string) string {
	type identity struct {
		Namespace      string `json:"namespace"`
		ServiceAccount string `json:"serviceAccount"`
	}
	list := []identity{}
	for _, sa := range sas {
		list = append(list, identity{ns, sa})
	}
	b, err := json.Marshal(map[string]any{"identities": list})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestContainerCredentialsIdentitiesFile: --watch-container-credentials-config names an
// identities file, here mounted the way kubelet mounts a ConfigMap (symlinks through
// ..data). A listed (namespace, ServiceAccount) gets EKS Pod Identity, which the SDK
// uses against the container credentials endpoint, even though its ServiceAccount also
// has a role-arn annotation. Swapping the content kubelet-style, without restarting the
// webhook, takes the identity away from that ServiceAccount (its next pod falls back to
// IRSA from the annotation) and gives it to another.
func TestContainerCredentialsIdentitiesFile(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	irsaRole, appCCRole, otherCCRole := RoleARN(ns, "app-irsa"), RoleARN(ns, "app-pod-identity"), RoleARN(ns, "other-pod-identity")
	cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: irsaRole})
	cluster.CreateServiceAccount(t, ns, "other", nil)
	fakes.STS.Trust(irsaRole, ServiceAccountSubject(ns, "app"))
	fakes.CC.Associate(ServiceAccountSubject(ns, "app"), appCCRole)
	fakes.CC.Associate(ServiceAccountSubject(ns, "other"), otherCCRole)

	dir := NewAtomicDir(t)
	dir.Write(t, map[string]string{"identities.json": identitiesJSON(t, ns, "app")})
	if fi, err := os.Lstat(dir.Path("identities.json")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("identities.json should be a symlink through ..data: %v %v", fi, err)
	}
	StartWebhookAndRegister(t, WebhookOptions{Namespace: ns, Args: []string{"--watch-container-credentials-config=" + dir.Path("identities.json")}},
		WebhookRegistration{}, SimplePod(ns, "probe", "app"), func(p *corev1.Pod) bool { return ContainerCredentialsInjected(p, "app") })

	probeCC := func(t *testing.T, pod *corev1.Pod, role string) {
		t.Helper()
		res := cluster.ProbePodCredentials(t, pod, "app")
		issued, found := fakes.CC.Lookup(res.AccessKeyID)
		if !res.OK || res.Source != SourceContainer || !found || issued.RoleARN != role || issued.Subject != ServiceAccountSubject(pod.Namespace, pod.Spec.ServiceAccountName) {
			t.Fatalf("SDK probe %+v; issued %+v (found %v); want container credentials for role %s", res, issued, found, role)
		}
		if len(res.Tokens) != 1 || res.Tokens[0].Audience != awsfake.DefaultPodIdentityAudience || res.Tokens[0].ExpirationSeconds < 79200 || res.Tokens[0].ExpirationSeconds > 86400 {
			t.Fatalf("probe tokens %+v, want one for %s of 79200-86400 s (jittered)", res.Tokens, awsfake.DefaultPodIdentityAudience)
		}
	}

	t.Run("listed", func(t *testing.T) {
		pod := cluster.CreatePod(t, SimplePod(ns, "listed", "app"))
		if !ContainerCredentialsInjected(pod, "app") || hasEnv(pod.Spec.Containers[0], EnvRoleARN) || PodVolume(pod, IRSAVolume) != nil {
			t.Fatalf("want container credentials only (listed wins over the role-arn annotation): %s", podJSON(t, pod))
		}
		probeCC(t, pod, appCCRole)
		if p := cluster.CreatePod(t, SimplePod(ns, "unlisted", "other")); !NoIdentity(p) {
			t.Fatalf("ServiceAccount other is not listed and has no role, yet: %s", podJSON(t, p))
		}
	})

	t.Run("swapped", func(t *testing.T) {
		old, _ := os.Readlink(filepath.Join(dir.Dir, "..data"))
		dir.Write(t, map[string]string{"identities.json": identitiesJSON(t, ns, "other")})
		if now, _ := os.Readlink(filepath.Join(dir.Dir, "..data")); now == old {
			t.Fatalf("..data still points to %s", old)
		}
		cluster.WaitForMutation(t, SimplePod(ns, "next", "app"), DefaultWait, func(p *corev1.Pod) bool {
			return WebIdentityInjected(p, "app", irsaRole) && !ContainerCredentialsInjected(p, "app")
		})
		pod := cluster.CreatePod(t, SimplePod(ns, "after-swap", "app"))
		if !WebIdentityInjected(pod, "app", irsaRole) || hasEnv(pod.Spec.Containers[0], EnvContainerFullURI) || PodVolume(pod, CCVolume) != nil {
			t.Fatalf("no longer listed: want IRSA from the annotation and no container credentials: %s", podJSON(t, pod))
		}
		if _, ok := pod.Labels[PodIdentityLabel]; ok {
			t.Fatalf("no longer listed, but labelled %s: %v", PodIdentityLabel, pod.Labels)
		}
		res := cluster.ProbePodCredentials(t, pod, "app")
		if issued, found := fakes.STS.Lookup(res.AccessKeyID); !res.OK || res.Source != SourceWebIdentity || !found || issued.RoleARN != irsaRole {
			t.Fatalf("SDK probe %+v; STS issued %+v (found %v), want role %s", res, issued, found, irsaRole)
		}

		other := cluster.CreatePod(t, SimplePod(ns, "other-listed", "other"))
		if !ContainerCredentialsInjected(other, "app") {
			t.Fatalf("ServiceAccount other is listed now: %s", podJSON(t, other))
		}
		probeCC(t, other, otherCCRole)
	})
}
