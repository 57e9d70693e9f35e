package sources

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// namespaces is the Namespace cache (--watch-namespaces), for policies that read the
// pod's namespaceObject.
type namespaces struct {
	informer cache.SharedIndexInformer
}

func newNamespaces(client kubernetes.Interface, resync time.Duration) (*namespaces, error) {
	n := &namespaces{informer: coreinformers.NewNamespaceInformer(client, resync, cache.Indexers{})}
	// Keep what NamespaceObject reads; spec, status and managed fields are dropped.
	if err := n.informer.SetTransform(func(obj any) (any, error) {
		ns, ok := obj.(*corev1.Namespace)
		if !ok {
			return obj, nil
		}
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns.Name, UID: ns.UID, ResourceVersion: ns.ResourceVersion, Labels: ns.Labels, Annotations: ns.Annotations,
		}}, nil
	}); err != nil {
		return nil, fmt.Errorf("namespace informer: %w", err)
	}
	return n, nil
}

// synced: lookups read the informer's store, so the store's sync is what counts.
func (n *namespaces) synced() bool { return n.informer.HasSynced() }

// get returns the Namespace, or nil when the cache does not have it.
func (n *namespaces) get(name string) *engine.NamespaceObject {
	obj, ok, err := n.informer.GetIndexer().GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil
	}
	return NamespaceObject(ns)
}
