package sources

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// StripServiceAccount keeps the part of a ServiceAccount that policies may read: its
// name, namespace, uid, resourceVersion and the annotations under the annotation
// prefix ("<prefix>/..."). Labels, other annotations, secrets and managed fields are
// dropped, as upstream does, so that a cache of every ServiceAccount in a large
// cluster stays small. Documented in docs/policies.md.
func StripServiceAccount(sa *corev1.ServiceAccount, annotationPrefix string) *engine.ServiceAccount {
	out := &engine.ServiceAccount{
		Name:            sa.Name,
		Namespace:       sa.Namespace,
		UID:             string(sa.UID),
		ResourceVersion: sa.ResourceVersion,
	}
	prefix := annotationPrefix + "/"
	for k, v := range sa.Annotations {
		if strings.HasPrefix(k, prefix) {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	return out
}

// NamespaceObject keeps a Namespace's name, labels and annotations for policies.
func NamespaceObject(ns *corev1.Namespace) *engine.NamespaceObject {
	return &engine.NamespaceObject{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
}
