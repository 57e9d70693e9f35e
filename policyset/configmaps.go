package policyset

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// configMapSource watches the bundle ConfigMaps of one namespace through an informer.
type configMapSource struct {
	allowGrants bool
	namespace   string
	selector    labels.Selector
	factory     informers.SharedInformerFactory
	informer    cache.SharedIndexInformer
	lister      listerscorev1.ConfigMapLister
}

// newConfigMapSource prepares the informer; changed is called on every add, update and
// delete (deleting a bundle ConfigMap is a change like any other).
func newConfigMapSource(client kubernetes.Interface, namespace string, selector labels.Selector, changed func()) (*configMapSource, error) {
	// Resync 0: a periodic resync would only re-deliver what is known; rebuilds are
	// driven by real changes.
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector.String() }))
	cms := factory.Core().V1().ConfigMaps()
	informer := cms.Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		UpdateFunc: func(any, any) { changed() },
		DeleteFunc: func(any) { changed() },
	}); err != nil {
		return nil, fmt.Errorf("bundle ConfigMaps: %w", err)
	}
	return &configMapSource{namespace: namespace, selector: selector, factory: factory, informer: informer, lister: cms.Lister()}, nil
}

// start runs the informer until ctx ends and waits for its first list.
func (s *configMapSource) start(ctx context.Context) error {
	s.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return fmt.Errorf("bundle ConfigMaps in namespace %s: the informer did not sync: %w", s.namespace, context.Cause(ctx))
	}
	return nil
}

// entries reads the bundle ConfigMaps from the informer's cache, in run order.
func (s *configMapSource) entries() ([]*entry, error) {
	// Filtered again here: the selector on the watch is what the API server honours,
	// this keeps the cache's content honest whatever the transport did.
	list, err := s.lister.ConfigMaps(s.namespace).List(s.selector)
	if err != nil {
		return nil, fmt.Errorf("listing bundle ConfigMaps: %w", err)
	}
	out := make([]*entry, 0, len(list))
	for _, cm := range list {
		out = append(out, configMapEntry(cm, s.allowGrants))
	}
	sortEntries(out)
	return out, nil
}

// configMapEntry loads one bundle ConfigMap. Its data keys are the bundle's files.
// Unless allowGrants, a manifest with grants is refused: grants are written by the
// bundle's own author, so they would let anyone who can write a ConfigMap in the
// namespace change images, privileges or host paths of every pod.
func configMapEntry(cm *corev1.ConfigMap, allowGrants bool) *entry {
	source := "configmap " + cm.Namespace + "/" + cm.Name
	e := &entry{slot: "configmap:" + cm.Name, source: source, name: cm.Name, configMap: cm}
	order, err := configMapOrder(cm)
	if err != nil {
		return newEntry(e, nil, &engine.LoadError{Source: source, Field: "metadata.annotations[" + OrderAnnotation + "]", Reason: err.Error()})
	}
	e.order = order
	if len(cm.BinaryData) > 0 {
		keys := make([]string, 0, len(cm.BinaryData))
		for k := range cm.BinaryData {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		// Rego and YAML are text; binary keys are most likely a mistake, and refusing
		// them says so instead of ignoring part of the bundle.
		return newEntry(e, nil, &engine.LoadError{Source: source, File: keys[0],
			Reason: "binaryData is not allowed: a bundle ConfigMap holds manifest.yaml and *.rego as data keys"})
	}
	b, err := engine.LoadMap(source, cm.Data) // a missing manifest.yaml is refused there
	if err == nil && !allowGrants {
		g := b.Manifest.Grants
		if len(g.Paths)+len(g.VolumeTypes)+len(g.SecurityContextFields) > 0 {
			return newEntry(e, nil, &engine.LoadError{Source: source, File: engine.ManifestFile, Field: "grants",
				Reason: "grants are not allowed in bundle ConfigMaps unless the webhook runs with --allow-configmap-bundle-grants " +
					"(a ConfigMap author could grant themselves any change to any pod); put such a bundle in a --bundle directory"})
		}
	}
	return newEntry(e, b, err)
}

// configMapOrder reads the order annotation; absent means 0.
func configMapOrder(cm *corev1.ConfigMap) (int64, error) {
	v, ok := cm.Annotations[OrderAnnotation]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("must be an integer, got %q", v)
	}
	return n, nil
}
