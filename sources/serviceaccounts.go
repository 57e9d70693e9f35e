package sources

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// serviceAccounts is the ServiceAccount cache: a cluster-wide informer whose objects
// are stripped to what policies may read, a map of those as the engine takes them, and
// the grace-period machinery that waits for (and fetches) ServiceAccounts the informer
// has not delivered yet, the race of upstream #174/#194.
//
// The map, not the informer's store, is what lookups read, so that Clear can empty it
// (the debug route) and a fetched ServiceAccount can be added before the informer
// sees it; the informer's add, update and resync events fill it again.
type serviceAccounts struct {
	client   kubernetes.Interface
	prefix   string
	grace    time.Duration
	metrics  *metrics.Metrics
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
	used     sync.Once

	limiter      *rate.Limiter
	fetchTimeout time.Duration
	queue        chan fetchRequest

	mu      sync.RWMutex
	cache   map[string]*engine.ServiceAccount // "ns/name" → what policies see
	pending map[string]*pendingLookup         // "ns/name" → requests waiting for it
}

// pendingLookup is shared by all requests waiting for one missing ServiceAccount, so
// that they trigger one GET between them. Guarded by serviceAccounts.mu.
type pendingLookup struct {
	done     chan struct{} // closed when the ServiceAccount arrives in the cache
	waiters  int
	fetching bool  // a GET is queued or running
	err      error // the last GET's error (not NotFound), for the waiters to report
}

func newServiceAccounts(client kubernetes.Interface, prefix string, resync, grace time.Duration, m *metrics.Metrics) (*serviceAccounts, error) {
	s := &serviceAccounts{
		client:       client,
		prefix:       prefix,
		grace:        grace,
		metrics:      m,
		informer:     coreinformers.NewServiceAccountInformer(client, metav1.NamespaceAll, resync, cache.Indexers{}),
		limiter:      rate.NewLimiter(fetchQPS, fetchBurst),
		fetchTimeout: fetchTimeout,
		queue:        make(chan fetchRequest, fetchQueueSize),
		cache:        map[string]*engine.ServiceAccount{},
		pending:      map[string]*pendingLookup{},
	}
	// Strip before the object reaches the store: a large cluster has many
	// ServiceAccounts and the webhook needs only a few fields of each (upstream PR #301).
	if err := s.informer.SetTransform(stripTransform(prefix)); err != nil {
		return nil, fmt.Errorf("serviceaccount informer: %w", err)
	}
	reg, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.upsert(obj) },
		UpdateFunc: func(_, obj any) { s.upsert(obj) },
		DeleteFunc: s.remove,
	})
	if err != nil {
		return nil, fmt.Errorf("serviceaccount informer: %w", err)
	}
	s.reg = reg
	return s, nil
}

// stripTransform is the informer's transform: it turns each ServiceAccount into the
// compact object the store keeps. It must be idempotent and must pass through what is
// not a ServiceAccount (tombstones).
func stripTransform(prefix string) cache.TransformFunc {
	return func(obj any) (any, error) {
		sa, ok := obj.(*corev1.ServiceAccount)
		if !ok {
			return obj, nil
		}
		return newCachedServiceAccount(StripServiceAccount(sa, prefix)), nil
	}
}

// cachedServiceAccount is what the informer's store keeps of a ServiceAccount: the
// engine's view of it and nothing else, so that the store and the lookup map share one
// small object. A stripped corev1.ServiceAccount would cost 320 bytes of struct alone;
// with this, a cached ServiceAccount costs under 400 bytes beyond its name strings
// (BenchmarkServiceAccountCacheMemory). The informer reads only its namespace, name,
// UID and resourceVersion through metav1.Object; the other accessors are not used.
type cachedServiceAccount struct {
	metav1.Object // nil: only the accessors defined below may be called
	sa            engine.ServiceAccount
}

var _ runtime.Object = (*cachedServiceAccount)(nil)

func newCachedServiceAccount(sa *engine.ServiceAccount) *cachedServiceAccount {
	return &cachedServiceAccount{sa: engine.ServiceAccount{
		Name: sa.Name, Namespace: sa.Namespace, UID: sa.UID, ResourceVersion: sa.ResourceVersion,
		Labels: sa.Labels, Annotations: sa.Annotations,
	}}
}

func (c *cachedServiceAccount) GetNamespace() string             { return c.sa.Namespace }
func (c *cachedServiceAccount) GetName() string                  { return c.sa.Name }
func (c *cachedServiceAccount) GetUID() types.UID                { return types.UID(c.sa.UID) }
func (c *cachedServiceAccount) GetResourceVersion() string       { return c.sa.ResourceVersion }
func (c *cachedServiceAccount) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject copies the fields (the maps are read-only and shared).
func (c *cachedServiceAccount) DeepCopyObject() runtime.Object { return newCachedServiceAccount(&c.sa) }

func (s *serviceAccounts) run(ctx context.Context) {
	go s.informer.RunWithContext(ctx)
	for range fetchWorkers {
		go s.fetchLoop(ctx)
	}
}

func (s *serviceAccounts) synced() bool { return s.reg.HasSynced() }

// upsert handles the informer's add, update and resync events.
func (s *serviceAccounts) upsert(obj any) {
	c, ok := obj.(*cachedServiceAccount)
	if !ok {
		return
	}
	sa := &c.sa
	s.used.Do(func() { s.metrics.Used.Set(1) })
	key := sa.Namespace + "/" + sa.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	// Resyncs deliver every ServiceAccount again; keep the entry when nothing changed.
	old := s.cache[key]
	if old == nil || sa.ResourceVersion == "" || old.ResourceVersion != sa.ResourceVersion || old.UID != sa.UID {
		s.cache[key] = sa
	}
	s.wakeLocked(key)
}

// remove handles the informer's delete events, tombstones included.
func (s *serviceAccounts) remove(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		klog.ErrorS(err, "Ignoring a ServiceAccount delete event without a key")
		return
	}
	s.mu.Lock()
	delete(s.cache, key)
	s.mu.Unlock()
}

// wakeLocked wakes the requests waiting for key; they read the cache again.
func (s *serviceAccounts) wakeLocked(key string) {
	if p := s.pending[key]; p != nil {
		close(p.done)
		delete(s.pending, key)
	}
}

// releaseLocked forgets p once nobody waits for it and no GET is on its way, so that
// lookups of ServiceAccounts that never appear do not pile up (upstream keeps them).
func (s *serviceAccounts) releaseLocked(key string, p *pendingLookup) {
	if p.waiters == 0 && !p.fetching && s.pending[key] == p {
		delete(s.pending, key)
	}
}

// get is Sources.ServiceAccount.
func (s *serviceAccounts) get(ctx context.Context, namespace, name string, wait bool) (*engine.ServiceAccount, error) {
	key := namespace + "/" + name
	s.mu.RLock()
	sa := s.cache[key]
	s.mu.RUnlock()
	if sa != nil {
		return sa, nil
	}
	s.metrics.SACacheMisses.Inc()
	if !wait || s.grace <= 0 {
		s.metrics.MissingSACount.Inc()
		return nil, nil
	}
	return s.waitFor(ctx, key, namespace, name)
}

// waitFor waits up to the grace period for a ServiceAccount missing from the cache,
// while one shared GET looks for it on the API server.
func (s *serviceAccounts) waitFor(ctx context.Context, key, namespace, name string) (*engine.ServiceAccount, error) {
	s.mu.Lock()
	if sa := s.cache[key]; sa != nil { // arrived since the first look
		s.mu.Unlock()
		return sa, nil
	}
	p := s.pending[key]
	if p == nil {
		p = &pendingLookup{done: make(chan struct{})}
		s.pending[key] = p
	}
	p.waiters++
	startFetch := !p.fetching
	p.fetching = true
	s.mu.Unlock()

	if startFetch {
		s.enqueue(fetchRequest{key: key, namespace: namespace, name: name, p: p})
	}

	timer := time.NewTimer(s.grace)
	defer timer.Stop()
	var ctxErr error
	select {
	case <-p.done:
	case <-timer.C:
	case <-ctx.Done():
		ctxErr = ctx.Err()
	}

	s.mu.Lock()
	p.waiters--
	sa := s.cache[key] // read again even after a timeout: it may have just arrived
	fetchErr := p.err
	s.releaseLocked(key, p)
	s.mu.Unlock()

	if sa != nil {
		s.metrics.SAGraceWaits.WithLabelValues("found").Inc()
		return sa, nil
	}
	s.metrics.SAGraceWaits.WithLabelValues("timeout").Inc()
	s.metrics.MissingSACount.Inc()
	switch {
	case ctxErr != nil:
		return nil, fmt.Errorf("waiting for ServiceAccount %s: %w", key, ctxErr)
	case fetchErr != nil:
		return nil, fmt.Errorf("ServiceAccount %s is not in the cache and reading it failed: %w", key, fetchErr)
	}
	return nil, nil
}

// waiting is how many requests wait for key; for tests.
func (s *serviceAccounts) waiting(key string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p := s.pending[key]; p != nil {
		return p.waiters
	}
	return 0
}

// snapshot copies the cache for Dump.
func (s *serviceAccounts) snapshot() map[string]*engine.ServiceAccount {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*engine.ServiceAccount, len(s.cache))
	for k, v := range s.cache {
		out[k] = v
	}
	return out
}

// clear empties the cache; waiting requests are unaffected.
func (s *serviceAccounts) clear() {
	s.mu.Lock()
	s.cache = map[string]*engine.ServiceAccount{}
	s.mu.Unlock()
}
