package policyset

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// activate makes set, built into prog, the active generation and says so: log,
// metrics, and a Normal Event on each ConfigMap bundle that is new or changed.
func (m *Manager) activate(r *round, set []*entry, prog *engine.Program) {
	var number uint64 = 1
	if prev := m.gen.Load(); prev != nil {
		number = prev.number + 1
	}
	// Metrics first: whoever sees the new generation sees its metrics too.
	m.setMetrics(number, set)
	m.gen.Store(&generation{number: number, program: prog, entries: set, key: setKey(set)})
	m.notReady.Store(nil)

	sources := make([]string, len(set))
	for i, e := range set {
		sources[i] = e.source
		if !r.changed(e) {
			continue // held back or unchanged: nothing new to say about it
		}
		delete(m.rejected, e.slot)
		if e.configMap != nil {
			m.event(e.configMap, corev1.EventTypeNormal, ReasonActivated,
				fmt.Sprintf("bundle %s is active in policy generation %d", e.bundle.Name(), number))
		}
	}
	klog.InfoS("Activated a policy bundle generation", "generation", number, "bundles", sources)
}

// reject reports the changes held back and why. Each slot's rejection is reported
// once per content and error: a broken ConfigMap that stays broken is retried on every
// rebuild, but not re-announced.
func (m *Manager) reject(r *round, culprits []rejection) {
	var activeGen uint64
	if g := m.gen.Load(); g != nil {
		activeGen = g.number
	}
	for _, c := range culprits {
		e, err := c.e, c.err
		mark := e.sum + "\x00" + err.Error()
		if m.rejected[e.slot] == mark {
			continue
		}
		m.rejected[e.slot] = mark
		if md := m.opts.Metrics; md != nil {
			md.BundleLoadFailures.WithLabelValues(e.source).Inc()
		}
		kept := "left out"
		if r.active[e.slot] != nil {
			kept = "its previous version stays active"
		}
		_, deleted := r.deleted[e.slot]
		if deleted {
			kept = "its deletion is held back and it stays active"
		}
		klog.ErrorS(err, "Rejected a policy bundle change; "+kept, "bundle", e.source, "generation", activeGen)
		if e.configMap != nil && !deleted {
			m.event(e.configMap, corev1.EventTypeWarning, ReasonRejected, err.Error())
		}
	}
}

// noBundles handles a configuration with nothing left to run: the engine cannot
// compile an empty set, so an active generation stays, and before the first the
// manager is not ready.
func (m *Manager) noBundles(active *generation) {
	if active == nil {
		why := "no policy bundles to activate: waiting for a bundle ConfigMap that loads, compiles and passes its tests"
		m.notReady.Store(&why)
		return
	}
	klog.InfoS("No policy bundles are left; the active generation stays, since an empty one cannot be compiled", "generation", active.number)
}

// forgetVanished drops the rejection notes of slots that are gone, so that a bundle
// deleted and created again with the same fault is reported again.
func (m *Manager) forgetVanished(current []*entry) {
	present := map[string]bool{}
	for _, e := range current {
		present[e.slot] = true
	}
	for slot := range m.rejected {
		if !present[slot] {
			delete(m.rejected, slot)
		}
	}
}

// setMetrics publishes the active generation: its number and one series per bundle.
func (m *Manager) setMetrics(number uint64, set []*entry) {
	md := m.opts.Metrics
	if md == nil {
		return
	}
	md.BundleGeneration.Set(float64(number))
	now := map[[2]string]bool{}
	for _, e := range set {
		l := [2]string{e.bundle.Name(), e.source}
		now[l] = true
		md.BundleActive.WithLabelValues(l[0], l[1]).Set(1)
	}
	for l := range m.activeLabels {
		if !now[l] {
			md.BundleActive.DeleteLabelValues(l[0], l[1])
		}
	}
	m.activeLabels = now
}

// event records an Event on a bundle ConfigMap, when there is a recorder.
func (m *Manager) event(cm *corev1.ConfigMap, eventType, reason, message string) {
	if m.recorder == nil {
		return
	}
	m.recorder.Event(cm, eventType, reason, truncateMessage(message, maxEventMessage))
}
