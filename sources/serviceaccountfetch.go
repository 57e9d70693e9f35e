package sources

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// The fallback GETs of ServiceAccounts missing from the cache (upstream PR #252): a
// bounded queue, a few workers behind one rate limiter, one GET per missing key at a
// time however many requests wait for it.

// Limits of the fallback GETs for ServiceAccounts missing from the cache. Rate, burst
// and timeout are upstream's; the queue length is upstream's channel size.
const (
	fetchQPS       = 10
	fetchBurst     = 20
	fetchTimeout   = time.Second
	fetchQueueSize = 1000
	// fetchWorkers lets one slow GET (up to fetchTimeout) not hold up the others;
	// the rate limiter, not the worker count, bounds the load on the API server.
	fetchWorkers = 4
)

// fetchRequest asks for one GET on behalf of the requests sharing p.
type fetchRequest struct {
	key, namespace, name string
	p                    *pendingLookup
}

// enqueue queues a GET without blocking the request; a full queue drops it, and a
// later request for the key may queue it again.
func (s *serviceAccounts) enqueue(r fetchRequest) {
	select {
	case s.queue <- r:
	default:
		s.metrics.SAFetches.WithLabelValues("dropped").Inc()
		s.fetchDone(r, nil)
	}
}

func (s *serviceAccounts) fetchLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.queue:
			s.fetch(ctx, r)
		}
	}
}

// fetch GETs one ServiceAccount, within the rate limit, and puts it in the cache.
func (s *serviceAccounts) fetch(ctx context.Context, r fetchRequest) {
	if !s.fetchNeeded(r) {
		return
	}
	if err := s.limiter.Wait(ctx); err != nil {
		s.fetchDone(r, nil) // shutting down
		return
	}
	if !s.fetchNeeded(r) { // the wait for the limiter may have been long
		return
	}

	gctx, cancel := context.WithTimeout(ctx, s.fetchTimeout)
	sa, err := s.client.CoreV1().ServiceAccounts(r.namespace).Get(gctx, r.name, metav1.GetOptions{})
	cancel()
	switch {
	case err == nil:
		s.metrics.SAFetches.WithLabelValues("found").Inc()
		s.insertFetched(r, StripServiceAccount(sa, s.prefix))
	case apierrors.IsNotFound(err):
		// Not an error: the informer may still deliver it within the grace period.
		s.metrics.SAFetches.WithLabelValues("not_found").Inc()
		s.fetchDone(r, nil)
	default:
		s.metrics.SAFetches.WithLabelValues("error").Inc()
		klog.ErrorS(err, "Reading a ServiceAccount missing from the cache failed", "serviceAccount", klog.KRef(r.namespace, r.name))
		s.fetchDone(r, err)
	}
}

// fetchNeeded skips GETs nobody needs any more: the ServiceAccount arrived meanwhile
// (not counted: no GET was due), or every request waiting for it gave up while the GET
// sat in the queue (counted as dropped).
func (s *serviceAccounts) fetchNeeded(r fetchRequest) bool {
	s.mu.RLock()
	cached, waiters := s.cache[r.key] != nil, r.p.waiters
	s.mu.RUnlock()
	if cached || waiters == 0 {
		if !cached {
			s.metrics.SAFetches.WithLabelValues("dropped").Inc()
		}
		s.fetchDone(r, nil)
		return false
	}
	return true
}

// insertFetched adds a fetched ServiceAccount and wakes the waiters, unless the
// informer delivered the ServiceAccount while the GET ran: the informer's copy, or its
// later delete, is newer than what the GET saw.
func (s *serviceAccounts) insertFetched(r fetchRequest, sa *engine.ServiceAccount) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.p.fetching = false
	select {
	case <-r.p.done: // woken by the informer
	default:
		if s.cache[r.key] == nil {
			s.cache[r.key] = sa
		}
	}
	s.wakeLocked(r.key)
	s.releaseLocked(r.key, r.p)
}

// fetchDone ends a GET that found nothing. Unlike upstream, the key is not left stuck:
// the next request for it may start a new GET.
func (s *serviceAccounts) fetchDone(r fetchRequest, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.p.fetching = false
	if err != nil {
		r.p.err = err
	}
	s.releaseLocked(r.key, r.p)
}
