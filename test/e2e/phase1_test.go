package e2e

// Phase 1: the identity chain without the webhook. The pods carry, by hand, exactly
// what the webhook produces (reference/upstream-behaviour.md), and the real AWS SDK,
// given only the stored pod's env and a TokenRequest token for its projected volume,
// must get credentials from the local STS / container credentials endpoint for the
// right role and subject, and be refused otherwise.

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/pod-identity-webhook/pod-identity-webhook/test/e2e/internal/awsfake"
)

// storedPod creates pod and reads it back, checking that the apiserver kept the
// identity env, mount and volume as written and that ServiceAccount admission ran.
func storedPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	created := cluster.CreatePod(t, pod)
	got := cluster.GetPod(t, created.Namespace, created.Name)
	ctr := findContainer(got, "app")
	wantCtr := pod.Spec.Containers[0]
	if !equality.Semantic.DeepEqual(ctr.Env, wantCtr.Env) {
		t.Fatalf("stored env %v, want %v", ctr.Env, wantCtr.Env)
	}
	if len(ctr.VolumeMounts) == 0 || !equality.Semantic.DeepEqual(ctr.VolumeMounts[0], wantCtr.VolumeMounts[0]) {
		t.Fatalf("stored mounts %+v, want %+v first", ctr.VolumeMounts, wantCtr.VolumeMounts[0])
	}
	wantVol, stored := pod.Spec.Volumes[0], got.Spec.Volumes[0]
	if stored.Name != wantVol.Name || stored.Projected == nil || !equality.Semantic.DeepEqual(stored.Projected.Sources, wantVol.Projected.Sources) {
		t.Fatalf("stored volume %+v, want the projection %+v", stored, wantVol)
	}
	apiAccess := false
	for _, v := range got.Spec.Volumes {
		apiAccess = apiAccess || strings.HasPrefix(v.Name, "kube-api-access-")
	}
	if !apiAccess || got.Spec.NodeName != "" || got.Status.Phase != corev1.PodPending {
		t.Fatalf("stored pod: kube-api-access volume %v, node %q, phase %q; want the ServiceAccount admission volume, no node, Pending", apiAccess, got.Spec.NodeName, got.Status.Phase)
	}
	return got
}

// checkIssued asserts that the probe's credentials are the ones the endpoint issued to
// role for the pod's ServiceAccount token, bound to the pod.
func checkIssued(t *testing.T, res ProbeResult, issued awsfake.Issued, found bool, pod *corev1.Pod, role, audience string) {
	t.Helper()
	if !found {
		t.Fatalf("the endpoint has no record of access key %q", res.AccessKeyID)
	}
	subject := ServiceAccountSubject(pod.Namespace, pod.Spec.ServiceAccountName)
	if issued.RoleARN != role || issued.Subject != subject || issued.Audience != audience {
		t.Fatalf("issued for role %s, subject %s, audience %s; want %s, %s, %s", issued.RoleARN, issued.Subject, issued.Audience, role, subject, audience)
	}
	if issued.SecretAccessKey != res.SecretAccessKey || issued.SessionToken != res.SessionToken {
		t.Fatalf("SDK credentials (secret %q, session token %q) differ from the issued ones (%q, %q)", res.SecretAccessKey, res.SessionToken, issued.SecretAccessKey, issued.SessionToken)
	}
	// The SDK may move the expiry earlier by its refresh window (5 minutes for
	// container credentials); it must never move it later.
	expires, err := time.Parse(time.RFC3339, res.Expires)
	if !res.CanExpire || err != nil || expires.After(issued.Expiration) || expires.Before(issued.Expiration.Add(-10*time.Minute)) {
		t.Fatalf("SDK credentials expire %q (canExpire %v), issued ones at %s", res.Expires, res.CanExpire, issued.Expiration.UTC().Format(time.RFC3339))
	}
	k := issued.Claims.Kubernetes
	if k.Namespace != pod.Namespace || k.Pod == nil || k.Pod.Name != pod.Name || k.Pod.UID != string(pod.UID) ||
		k.ServiceAccount == nil || k.ServiceAccount.Name != pod.Spec.ServiceAccountName {
		t.Fatalf("token kubernetes.io claims %+v %+v %+v, want the pod %s/%s (%s) and ServiceAccount %s", k, k.Pod, k.ServiceAccount, pod.Namespace, pod.Name, pod.UID, pod.Spec.ServiceAccountName)
	}
	if !slices.Equal(issued.Claims.Audience, []string{audience}) || issued.Claims.Issuer != cluster.Issuer {
		t.Fatalf("token aud %v iss %s", issued.Claims.Audience, issued.Claims.Issuer)
	}
	if got := issued.Claims.Expiry.Sub(issued.Claims.IssuedAt); got != time.Duration(TokenExpiration)*time.Second {
		t.Fatalf("token lifetime %s, want the projection's %ds", got, TokenExpiration)
	}
}

func TestWebIdentityWithoutWebhook(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role, otherRole := RoleARN(ns, "app"), RoleARN(ns, "other")
	cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: role})
	cluster.CreateServiceAccount(t, ns, "other", nil)
	fakes.STS.Trust(role, ServiceAccountSubject(ns, "app"))
	fakes.STS.Trust(otherRole, ServiceAccountSubject(ns, "other"))

	t.Run("trusted role", func(t *testing.T) {
		pod := storedPod(t, IRSAPod(ns, "app", "app", role))
		res := cluster.ProbePodCredentials(t, pod, "app")
		if !res.OK || res.Source != SourceWebIdentity || res.Region != "us-west-2" {
			t.Fatalf("SDK probe: %+v", res)
		}
		if len(res.Tokens) != 1 || res.Tokens[0].Volume != IRSAVolume || res.Tokens[0].Audience != awsfake.DefaultSTSAudience || res.Tokens[0].ExpirationSeconds != TokenExpiration {
			t.Fatalf("tokens %+v", res.Tokens)
		}
		issued, found := fakes.STS.Lookup(res.AccessKeyID)
		checkIssued(t, res, issued, found, pod, role, awsfake.DefaultSTSAudience)
		if issued.SessionName == "" {
			t.Fatal("no RoleSessionName recorded")
		}
		n := 0
		for _, c := range fakes.STS.Calls() {
			if c.RoleARN == role {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("STS saw %d calls for %s, want 1", n, role)
		}
	})

	t.Run("role that trusts another ServiceAccount", func(t *testing.T) {
		pod := storedPod(t, IRSAPod(ns, "wrong-role", "app", otherRole))
		res := cluster.ProbePodCredentials(t, pod, "app")
		expectRefused(t, res, "AccessDenied", fakes.STS.Calls(), otherRole)
	})

	t.Run("ServiceAccount the role does not trust", func(t *testing.T) {
		pod := storedPod(t, IRSAPod(ns, "wrong-subject", "other", role))
		res := cluster.ProbePodCredentials(t, pod, "app")
		expectRefused(t, res, "AccessDenied", fakes.STS.Calls(), role)
	})
}

// expectRefused checks a refused probe, and that the STS's last call for role refused it
// with the same code.
func expectRefused(t *testing.T, res ProbeResult, code string, calls []awsfake.STSCall, role string) {
	t.Helper()
	if res.OK || res.Stage != "retrieve" || res.ErrorCode != code || res.AccessKeyID != "" {
		t.Fatalf("SDK probe: %+v; want a refusal with %s", res, code)
	}
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].RoleARN == role {
			if calls[i].ErrorCode != code {
				t.Fatalf("STS's last call for %s: %+v, want %s", role, calls[i], code)
			}
			return
		}
	}
	t.Fatalf("the STS never saw a call for %s", role)
}

func TestContainerCredentialsWithoutWebhook(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role := RoleARN(ns, "pod-identity")
	cluster.CreateServiceAccount(t, ns, "app", nil)
	cluster.CreateServiceAccount(t, ns, "unassociated", nil)
	fakes.CC.Associate(ServiceAccountSubject(ns, "app"), role)

	lastCall := func(t *testing.T) awsfake.CCCall {
		calls := fakes.CC.Calls()
		if len(calls) == 0 {
			t.Fatal("the container credentials endpoint saw no call")
		}
		return calls[len(calls)-1]
	}

	t.Run("associated ServiceAccount", func(t *testing.T) {
		pod := storedPod(t, PodIdentityPod(ns, "app", "app", awsfake.DefaultPodIdentityAudience))
		res := cluster.ProbePodCredentials(t, pod, "app")
		if !res.OK || res.Source != SourceContainer {
			t.Fatalf("SDK probe: %+v", res)
		}
		if uri, _ := res.EnvValue(EnvContainerFullURI); uri != fakes.CC.URL() {
			t.Fatalf("probe %s=%s, want %s", EnvContainerFullURI, uri, fakes.CC.URL())
		}
		issued, found := fakes.CC.Lookup(res.AccessKeyID)
		checkIssued(t, res, issued, found, pod, role, awsfake.DefaultPodIdentityAudience)
	})

	t.Run("ServiceAccount without association", func(t *testing.T) {
		pod := storedPod(t, PodIdentityPod(ns, "unassociated", "unassociated", awsfake.DefaultPodIdentityAudience))
		res := cluster.ProbePodCredentials(t, pod, "app")
		if res.OK || res.ErrorCode != "AccessDeniedException" {
			t.Fatalf("SDK probe: %+v; want AccessDeniedException", res)
		}
		if c := lastCall(t); c.Status != 403 || c.ErrorCode != "AccessDeniedException" {
			t.Fatalf("last call %+v", c)
		}
	})

	t.Run("token for the STS audience", func(t *testing.T) {
		pod := storedPod(t, PodIdentityPod(ns, "wrong-audience", "app", awsfake.DefaultSTSAudience))
		res := cluster.ProbePodCredentials(t, pod, "app")
		if res.OK || res.ErrorCode != "InvalidTokenException" {
			t.Fatalf("SDK probe: %+v; want InvalidTokenException", res)
		}
		if c := lastCall(t); c.Status != 401 || !strings.Contains(c.Message, "audience") {
			t.Fatalf("last call %+v", c)
		}
	})
}

// TestProbeWithoutIdentity shows the probe finds no credentials anywhere else: a pod
// without identity env gets none.
func TestProbeWithoutIdentity(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	pod := cluster.CreatePod(t, SimplePod(ns, "plain", "default"))
	res := cluster.ProbePodCredentials(t, pod, "app")
	if res.OK || res.Stage != "retrieve" || len(res.Tokens) != 0 {
		t.Fatalf("SDK probe: %+v; want no credentials", res)
	}
	want := []string{"AWS_ENDPOINT_URL_STS", "AWS_CA_BUNDLE", "AWS_REGION", "HOME", "AWS_EC2_METADATA_DISABLED"}
	var got []string
	for _, kv := range res.Env {
		k, _, _ := strings.Cut(kv, "=")
		got = append(got, k)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("probe env keys %v, want exactly %v", got, want)
	}
}
