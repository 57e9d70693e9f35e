package policyset

import (
	"context"
	"fmt"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// rebuild reads every bundle and activates a new generation when the result differs
// from the active one and builds. A bundle that fails is held at its active version
// (or left out when it has none) and the rest is tried again, so a broken bundle
// never replaces a working one and never blocks the other bundles' changes.
//
// It returns an error only when the operator's explicit configuration (the default
// bundle, the directories) fails with no active version to fall back to, i.e. at
// startup, or when ctx ends. Everything else is reported (log, metric, Event) here.
func (m *Manager) rebuild(ctx context.Context) error {
	active := m.gen.Load()
	current, err := m.snapshot()
	if err != nil {
		return err
	}
	m.forgetVanished(current)
	r := newRound(current, active, m.opts)

	// A bundle that does not load has nothing to compile: hold it back at once.
	for _, e := range current {
		if e.err == nil {
			continue
		}
		if !r.holdable(e) {
			return e.err
		}
		r.hold(e)
		m.reject(r, []rejection{{e, e.err}})
	}
	for {
		set := r.compose(nil)
		if len(set) == 0 {
			m.noBundles(active)
			return nil
		}
		if active != nil && setKey(set) == active.key {
			return nil // nothing new, or only changes that were held back
		}
		prog, err := r.build(ctx, set)
		if err == nil {
			m.activate(r, set, prog)
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		culprits, fatal := r.culprits(ctx, set, err)
		if len(culprits) == 0 {
			return fatal // the explicit configuration fails at startup
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		for _, c := range culprits {
			r.hold(c.e)
		}
		m.reject(r, culprits)
	}
}

// snapshot reads every slot now, in run order.
func (m *Manager) snapshot() ([]*entry, error) {
	var out []*entry
	if m.defaultBundle != nil {
		out = append(out, m.defaultBundle)
	}
	for i, dir := range m.opts.Dirs {
		b, err := engine.LoadDir(dir)
		out = append(out, dirEntry(i+1, dir, b, err))
	}
	if m.configMaps != nil {
		cms, err := m.configMaps.entries()
		if err != nil {
			return nil, err
		}
		out = append(out, cms...)
	}
	return out, nil
}

// round is one rebuild: what the slots hold now, what is active, and which slots are
// held at their active version so far.
type round struct {
	opts      Options
	current   []*entry
	active    map[string]*entry // slot → entry in the active generation
	deleted   map[string]*entry // active slots no longer configured (ConfigMaps deleted)
	held      map[string]bool
	builds    map[string]buildResult // by setKey: a set is built at most once per round
	activeKey string                 // "" before the first generation
}

type buildResult struct {
	prog *engine.Program
	err  error
}

func newRound(current []*entry, active *generation, opts Options) *round {
	r := &round{opts: opts, current: current, active: map[string]*entry{}, deleted: map[string]*entry{},
		held: map[string]bool{}, builds: map[string]buildResult{}}
	if active != nil {
		r.activeKey = active.key
		for _, e := range active.entries {
			r.active[e.slot] = e
			r.deleted[e.slot] = e
		}
	}
	for _, e := range current {
		delete(r.deleted, e.slot)
	}
	return r
}

// changed reports whether e differs from the active version of its slot.
func (r *round) changed(e *entry) bool {
	a := r.active[e.slot]
	return a == nil || a.sum != e.sum
}

// holdable reports whether e's slot can fall back: it has an active version, or it is
// a ConfigMap, which may be left out. The explicit configuration at startup cannot.
func (r *round) holdable(e *entry) bool { return !e.explicit || r.active[e.slot] != nil }

func (r *round) hold(es ...*entry) {
	for _, e := range es {
		r.held[e.slot] = true
	}
}

// pending lists the changes not held back yet: changed current entries and deleted
// slots (as their active entries), in run order.
func (r *round) pending() []*entry {
	var out []*entry
	for _, e := range r.current {
		if !r.held[e.slot] && r.changed(e) {
			out = append(out, e)
		}
	}
	for slot, e := range r.deleted {
		if !r.held[slot] {
			out = append(out, e)
		}
	}
	sortEntries(out)
	return out
}

// compose returns the set to build: every slot's current entry, except that held
// slots, and those in also, use their active entry or are left out.
func (r *round) compose(also []*entry) []*entry {
	extra := map[string]bool{}
	for _, e := range also {
		extra[e.slot] = true
	}
	var out []*entry
	for _, e := range r.current {
		if !r.held[e.slot] && !extra[e.slot] {
			out = append(out, e)
		} else if a := r.active[e.slot]; a != nil {
			out = append(out, a)
		}
	}
	for slot, a := range r.deleted {
		if r.held[slot] || extra[slot] {
			out = append(out, a) // a deletion held back keeps the bundle
		}
	}
	sortEntries(out)
	return out
}

// build compiles the set and runs its tests; the program is usable only if both pass.
func (r *round) build(ctx context.Context, set []*entry) (*engine.Program, error) {
	key := setKey(set)
	if res, ok := r.builds[key]; ok {
		return res.prog, res.err
	}
	prog, err := buildSet(ctx, set, r.opts)
	if ctx.Err() == nil {
		r.builds[key] = buildResult{prog, err}
	}
	return prog, err
}

func buildSet(ctx context.Context, set []*entry, opts Options) (*engine.Program, error) {
	bundles := bundlesOf(set)
	prog, err := engine.Compile(ctx, bundles, opts.Compile)
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, opts.TestTimeout)
	defer cancel()
	report, err := engine.RunTests(tctx, bundles)
	if ctx.Err() == nil && tctx.Err() != nil {
		// Whatever the report says, it is incomplete.
		return nil, fmt.Errorf("bundle tests did not finish within %s", opts.TestTimeout)
	}
	if err != nil {
		return nil, err
	}
	if !report.OK() {
		return nil, testsFailed(report, set)
	}
	return prog, nil
}

// rejection is a change held back, and why.
type rejection struct {
	e   *entry
	err error
}

func rejections(es []*entry, err error) []rejection {
	out := make([]rejection, len(es))
	for i, e := range es {
		out[i] = rejection{e, err}
	}
	return out
}

// culprits decides which pending changes to hold back after set failed with err. It
// returns none, and the error, when the explicit configuration fails with nothing to
// fall back to.
func (r *round) culprits(ctx context.Context, set []*entry, err error) ([]rejection, error) {
	pending := r.pending()
	isPending := map[string]bool{}
	for _, e := range pending {
		isPending[e.slot] = true
	}
	var named []*entry
	allHoldable := true
	for _, e := range blame(err, set) {
		if isPending[e.slot] {
			named = append(named, e)
			allHoldable = allHoldable && r.holdable(e)
		}
	}
	if len(named) > 0 && allHoldable {
		return rejections(named, err), nil
	}
	// The error names no bundle that changed, so it comes from how the bundles
	// combine; or it names the explicit configuration at startup, whose tests may fail
	// only because a ConfigMap bundle extends it. Either way the changed ConfigMaps,
	// other people's run-time changes, are suspected first.
	var cms []*entry
	for _, e := range pending {
		if !e.explicit {
			cms = append(cms, e)
		}
	}
	if len(cms) > 0 && r.buildsWithout(ctx, cms) {
		return r.isolate(ctx, cms, err), nil
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	// The explicit configuration itself: the bundles named, else every changed one.
	explicit := named
	if len(explicit) == 0 {
		for _, e := range pending {
			if e.explicit {
				explicit = append(explicit, e)
			}
		}
	}
	for _, e := range explicit {
		if !r.holdable(e) {
			return nil, err
		}
	}
	if len(explicit) == 0 {
		// Nothing left to hold back, yet the set fails: it cannot happen while the
		// active set builds, and at startup every explicit bundle is pending.
		return nil, err
	}
	return rejections(explicit, err), nil
}

// buildsWithout reports whether the set builds with the given changes held back.
func (r *round) buildsWithout(ctx context.Context, held []*entry) bool {
	trial := r.compose(held)
	if len(trial) == 0 {
		return true // nothing left: those changes were all there was
	}
	if r.activeKey != "" && setKey(trial) == r.activeKey {
		return true // that is the active generation, known good
	}
	_, err := r.build(ctx, trial)
	return err == nil
}

// isolate finds which of the pending ConfigMap changes break the set when the error
// does not say. The set builds without any of them; they are applied again one at a
// time, in run order, and those after which it no longer builds are the culprits. It
// costs a build per change, only when the error cannot be attributed, and it keeps an
// innocent ConfigMap that changed at the same time from being held back, as blaming
// every changed ConfigMap would.
func (r *round) isolate(ctx context.Context, cms []*entry, err error) []rejection {
	var out []rejection
	rejected := map[string]bool{}
	for i, c := range cms {
		var held []*entry
		for j, o := range cms {
			if j > i || rejected[o.slot] {
				held = append(held, o)
			}
		}
		trial := r.compose(held)
		if len(trial) == 0 {
			continue // a deletion of the last bundle: nothing to build, nothing broken
		}
		_, terr := r.build(ctx, trial)
		if ctx.Err() != nil {
			return rejections(cms, err) // stopping anyway; nothing is reported then
		}
		if terr != nil {
			rejected[c.slot] = true
			out = append(out, rejection{c, fmt.Errorf("the bundles fail with this change: %w", terr)})
		}
	}
	if len(out) == 0 {
		// Each change builds on its own but not all together: only possible if a
		// build is not deterministic. Blame them all, as the error cannot say.
		return rejections(cms, err)
	}
	return out
}
