package sources

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// roleMappingSource follows the kOps pod-identity-webhook ConfigMap (--watch-config-map)
// and keeps the role mappings parsed from it. Unlike upstream, a key without '/' is
// skipped instead of crashing the process, and deleting the ConfigMap removes its
// mappings.
type roleMappingSource struct {
	namespace string
	metrics   *metrics.Metrics
	informer  cache.SharedIndexInformer
	reg       cache.ResourceEventHandlerRegistration

	// current is replaced as a whole, so readers see one ConfigMap version or the
	// next, never a mix. Never nil.
	current atomic.Pointer[RoleMappings]

	mu     sync.Mutex // serializes updates with clear
	lastRV string     // resourceVersion last parsed; resyncs of it are skipped
}

func newRoleMappingSource(client kubernetes.Interface, namespace string, resync time.Duration, m *metrics.Metrics) (*roleMappingSource, error) {
	s := &roleMappingSource{namespace: namespace, metrics: m}
	s.current.Store(&RoleMappings{})
	// Only the one ConfigMap: the namespace may hold many others (bundles among them).
	s.informer = coreinformers.NewFilteredConfigMapInformer(client, namespace, resync, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", RoleMappingConfigMapName).String()
		})
	reg, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.update(obj) },
		UpdateFunc: func(_, obj any) { s.update(obj) },
		DeleteFunc: s.remove,
	})
	if err != nil {
		return nil, fmt.Errorf("configmap informer: %w", err)
	}
	s.reg = reg
	return s, nil
}

func (s *roleMappingSource) mappings() RoleMappings { return *s.current.Load() }

func (s *roleMappingSource) synced() bool { return s.reg.HasSynced() }

// update parses a new version of the ConfigMap and, when it is valid, replaces the
// mappings. An invalid one leaves the previous mappings in force.
func (s *roleMappingSource) update(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || cm.Name != RoleMappingConfigMapName { // the field selector is a request, not a promise (fakes ignore it)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cm.ResourceVersion != "" && cm.ResourceVersion == s.lastRV {
		return
	}
	s.lastRV = cm.ResourceVersion

	config, found := cm.Data[RoleMappingKey]
	mappings, problems, err := ParseRoleMappings(config)
	if err != nil {
		klog.ErrorS(err, "Rejected the role-mapping ConfigMap; the previous mappings stay in force", "configMap", klog.KObj(cm))
		s.metrics.SourceUpdates.WithLabelValues("configmap", "rejected").Inc()
		return
	}
	for _, p := range problems {
		klog.ErrorS(p, "Skipped an entry of the role-mapping ConfigMap", "configMap", klog.KObj(cm))
		s.metrics.SourceProblems.WithLabelValues("configmap").Inc()
	}
	if !found {
		klog.InfoS("The role-mapping ConfigMap has no data."+RoleMappingKey+"; no mappings", "configMap", klog.KObj(cm))
	}
	s.current.Store(&mappings)
	s.metrics.SourceUpdates.WithLabelValues("configmap", "applied").Inc()
	klog.InfoS("Loaded role mappings", "configMap", klog.KObj(cm), "resourceVersion", cm.ResourceVersion, "entries", len(mappings), "skipped", len(problems))
}

// remove drops every mapping when the ConfigMap is deleted (upstream kept them until
// restart).
func (s *roleMappingSource) remove(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name != RoleMappingConfigMapName {
		return
	}
	s.clear()
	s.metrics.SourceUpdates.WithLabelValues("configmap", "applied").Inc()
	klog.InfoS("The role-mapping ConfigMap was deleted; no mappings", "configMap", klog.KRef(s.namespace, RoleMappingConfigMapName))
}

// clear drops the mappings and forgets the last version, so that the next event or
// resync parses the ConfigMap again.
func (s *roleMappingSource) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current.Store(&RoleMappings{})
	s.lastRV = ""
}
