package e2e

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/test/e2e/internal/awsfake"
)

// Upstream defaults (the webhook's flags).
const (
	IRSAVolume       = "aws-iam-token"
	IRSAMountPath    = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
	IRSATokenFile    = IRSAMountPath + "/token"
	CCVolume         = "eks-pod-identity-token"
	CCMountPath      = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
	CCTokenFile      = CCMountPath + "/eks-pod-identity-token"
	CCFullURI        = "http://169.254.170.23/v1/credentials"
	TokenExpiration  = int64(86400)
	RoleAnnotation   = "eks.amazonaws.com/role-arn"
	testAccount      = "111122223333"
	defaultTestImage = "public.ecr.aws/docker/library/busybox:1.36"
)

// RoleARN returns a role ARN unique to a namespace, so tests never share trust.
func RoleARN(ns, name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:role/%s-%s", testAccount, ns, name)
}

func tokenVolume(name, audience string, expiration int64, path string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: audience, ExpirationSeconds: &expiration, Path: path,
		}}},
	}}}
}

// IRSAPod is the pod the upstream webhook produces in web identity mode, with region
// us-west-2 and regional STS on, written by hand.
func IRSAPod(ns, name, sa, role string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers: []corev1.Container{{
				Name:  "app",
				Image: defaultTestImage,
				Env: []corev1.EnvVar{
					{Name: "AWS_STS_REGIONAL_ENDPOINTS", Value: "regional"},
					{Name: "AWS_DEFAULT_REGION", Value: "us-west-2"},
					{Name: "AWS_REGION", Value: "us-west-2"},
					{Name: EnvRoleARN, Value: role},
					{Name: EnvWebIdentityToken, Value: IRSATokenFile},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: IRSAVolume, ReadOnly: true, MountPath: IRSAMountPath}},
			}},
			Volumes: []corev1.Volume{tokenVolume(IRSAVolume, awsfake.DefaultSTSAudience, TokenExpiration, "token")},
		},
	}
}

// PodIdentityPod is the pod the upstream webhook produces in container credentials
// (EKS Pod Identity) mode, written by hand; audience is the projection's audience.
func PodIdentityPod(ns, name, sa, audience string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers: []corev1.Container{{
				Name:  "app",
				Image: defaultTestImage,
				Env: []corev1.EnvVar{
					{Name: EnvContainerFullURI, Value: CCFullURI},
					{Name: EnvContainerAuthFile, Value: CCTokenFile},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: CCVolume, ReadOnly: true, MountPath: CCMountPath}},
			}},
			Volumes: []corev1.Volume{tokenVolume(CCVolume, audience, TokenExpiration, CCVolume)},
		},
	}
}
