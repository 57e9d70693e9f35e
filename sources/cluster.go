package sources

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// Options configures Cluster. The fields mirror the serve flags named beside them.
type Options struct {
	// AnnotationPrefix (--annotation-prefix): ServiceAccount annotations under
	// "<prefix>/" are kept in the cache, the others dropped.
	AnnotationPrefix string
	// ResyncPeriod (--resync-period) of the informers; 0 disables resyncs.
	ResyncPeriod time.Duration
	// GracePeriod (--service-account-lookup-grace-period): how long a request may wait
	// for a ServiceAccount missing from the cache; 0 means no wait and no GET.
	GracePeriod time.Duration
	// WatchConfigMap (--watch-config-map) follows the pod-identity-webhook ConfigMap
	// in Namespace (--namespace).
	WatchConfigMap bool
	Namespace      string
	// IdentitiesFile (--watch-container-credentials-config) is the
	// container-credentials identities file; empty disables it.
	IdentitiesFile string
	// WatchNamespaces (--watch-namespaces) caches Namespaces for policies.
	WatchNamespaces bool
	// Metrics receives the sources' metrics; nil uses a private, unexported set.
	Metrics *metrics.Metrics
}

// Cluster is the serving Sources: informer caches of ServiceAccounts, the kOps
// ConfigMap and Namespaces, and the watched identities file. Create it with
// NewCluster, then Start it; serve once Ready returns nil.
type Cluster struct {
	sa      *serviceAccounts
	cm      *roleMappingSource // nil when --watch-config-map is off
	file    *identitiesFile    // nil when no identities file is configured
	ns      *namespaces        // nil when --watch-namespaces is off
	started atomic.Bool
}

// NewCluster builds the sources that opts enables; nothing talks to the API server or
// the file system before Start.
func NewCluster(client kubernetes.Interface, opts Options) (*Cluster, error) {
	if opts.ResyncPeriod < 0 {
		return nil, fmt.Errorf("resync period: must not be negative, got %s", opts.ResyncPeriod)
	}
	if opts.GracePeriod < 0 {
		return nil, fmt.Errorf("ServiceAccount lookup grace period: must not be negative, got %s", opts.GracePeriod)
	}
	if opts.WatchConfigMap && opts.Namespace == "" {
		return nil, errors.New("watching the role-mapping ConfigMap needs a namespace")
	}
	m := opts.Metrics
	if m == nil {
		m = metrics.New()
	}
	c := &Cluster{}
	var err error
	if c.sa, err = newServiceAccounts(client, opts.AnnotationPrefix, opts.ResyncPeriod, opts.GracePeriod, m); err != nil {
		return nil, err
	}
	if opts.WatchConfigMap {
		if c.cm, err = newRoleMappingSource(client, opts.Namespace, opts.ResyncPeriod, m); err != nil {
			return nil, err
		}
	}
	if opts.IdentitiesFile != "" {
		if c.file, err = newIdentitiesFile(opts.IdentitiesFile, m); err != nil {
			return nil, err
		}
	}
	if opts.WatchNamespaces {
		if c.ns, err = newNamespaces(client, opts.ResyncPeriod); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Start starts the informers, the ServiceAccount fetchers and the file watcher, and
// returns; they run until ctx ends. The identities file is read once before Start
// returns. An error means a source could not start (the file's directory cannot be
// watched); Start may be called once.
func (c *Cluster) Start(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("sources already started")
	}
	if c.file != nil {
		if err := c.file.start(ctx); err != nil {
			return err
		}
	}
	c.sa.run(ctx)
	if c.cm != nil {
		go c.cm.informer.RunWithContext(ctx)
	}
	if c.ns != nil {
		go c.ns.informer.RunWithContext(ctx)
	}
	return nil
}

// Ready returns nil once every enabled source has synced (informers) or been read
// (the identities file); otherwise an error naming those that have not. The webhook
// should not serve before: upstream did, and missed ServiceAccounts after restarts.
func (c *Cluster) Ready() error {
	if !c.started.Load() {
		return errors.New("sources not started")
	}
	var waiting []string
	if !c.sa.synced() {
		waiting = append(waiting, "ServiceAccount informer not synced")
	}
	if c.cm != nil && !c.cm.synced() {
		waiting = append(waiting, "ConfigMap informer not synced")
	}
	if c.ns != nil && !c.ns.synced() {
		waiting = append(waiting, "Namespace informer not synced")
	}
	if c.file != nil {
		if err := c.file.ready(); err != nil {
			waiting = append(waiting, err.Error())
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("sources not ready: %s", strings.Join(waiting, "; "))
	}
	return nil
}

// WaitForReady polls Ready until it returns nil or ctx ends; the error then says
// what was still missing.
func (c *Cluster) WaitForReady(ctx context.Context) error {
	const poll = 50 * time.Millisecond
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		err := c.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// ServiceAccount implements admission.Sources: the cached ServiceAccount; on a miss,
// and when wait allows, it waits up to the grace period while the ServiceAccount is
// fetched. Not found is (nil, nil); an error says why it could not be read and
// comes with a nil ServiceAccount.
func (c *Cluster) ServiceAccount(ctx context.Context, namespace, name string, wait bool) (*engine.ServiceAccount, error) {
	return c.sa.get(ctx, namespace, name, wait)
}

// Identities implements admission.Sources: the identities-file and ConfigMap entries
// for one ServiceAccount.
func (c *Cluster) Identities(namespace, name string) engine.Identities {
	var ids Identities
	var mappings RoleMappings
	if c.file != nil {
		ids = c.file.identities()
	}
	if c.cm != nil {
		mappings = c.cm.mappings()
	}
	return IdentitiesFor(ids, mappings, namespace, name)
}

// Namespace implements admission.Sources: the cached Namespace, or nil when
// --watch-namespaces is off or the cache does not have it.
func (c *Cluster) Namespace(_ context.Context, name string) *engine.NamespaceObject {
	if c.ns == nil {
		return nil
	}
	return c.ns.get(name)
}

// ServiceAccountView is one entry of Dump: the ServiceAccount as policies see it in
// `serviceAccount`.
type ServiceAccountView struct {
	APIVersion string                 `json:"apiVersion"`
	Kind       string                 `json:"kind"`
	Metadata   ServiceAccountViewMeta `json:"metadata"`
}

// ServiceAccountViewMeta is the metadata of a ServiceAccountView.
type ServiceAccountViewMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	UID             string            `json:"uid"`
	ResourceVersion string            `json:"resourceVersion"`
	Annotations     map[string]string `json:"annotations"`
}

// Dump is the ServiceAccount cache for the debug route: a map[string]ServiceAccountView
// from "namespace/name". As upstream, the ConfigMap entries are not in it.
func (c *Cluster) Dump() any {
	snap := c.sa.snapshot()
	out := make(map[string]ServiceAccountView, len(snap))
	for k, sa := range snap {
		ann := sa.Annotations
		if ann == nil {
			ann = map[string]string{}
		}
		out[k] = ServiceAccountView{APIVersion: "v1", Kind: "ServiceAccount", Metadata: ServiceAccountViewMeta{
			Name: sa.Name, Namespace: sa.Namespace, UID: sa.UID, ResourceVersion: sa.ResourceVersion, Annotations: ann,
		}}
	}
	return out
}

// Clear empties the ServiceAccount cache and the ConfigMap mappings, as upstream's
// debug route does (but under the caches' locks). Entries come back on the next
// informer event or resync; the identities file is not a cache and stays.
func (c *Cluster) Clear() {
	c.sa.clear()
	if c.cm != nil {
		c.cm.clear()
	}
}
