package policyset

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
)

// Manager owns the policy bundles at run time: it builds generations from the
// configured bundles, activates them atomically, and rebuilds on every change.
type Manager struct {
	opts     Options
	selector labels.Selector
	recorder record.EventRecorder

	gen      atomic.Pointer[generation]
	notReady atomic.Pointer[string] // why no generation is active, once a build said so

	started  atomic.Bool
	debounce *debouncer
	wg       sync.WaitGroup
	done     chan struct{}

	// Set by Start, before any goroutine reads them.
	defaultBundle *entry
	configMaps    *configMapSource
	dirs          *dirWatcher

	// Owned by whoever rebuilds: Start, then the debouncer's goroutine.
	rejected     map[string]string // slot → sum and error of the rejection last reported
	activeLabels map[[2]string]bool
}

// generation is one activated set of bundles.
type generation struct {
	number  uint64
	program *engine.Program
	entries []*entry // in run order
	key     string   // setKey(entries)
}

// New checks the options; nothing is read or watched before Start.
func New(opts Options) (*Manager, error) {
	sel, err := opts.validate()
	if err != nil {
		return nil, err
	}
	return &Manager{
		opts:         opts,
		selector:     sel,
		recorder:     opts.Recorder,
		debounce:     newDebouncer(opts.Debounce, 10*opts.Debounce),
		done:         make(chan struct{}),
		rejected:     map[string]string{},
		activeLabels: map[[2]string]bool{},
	}, nil
}

// Start builds and activates the first generation, then watches the bundle
// directories and ConfigMaps until ctx ends, rebuilding on every change.
//
// It returns an error when the default bundle or a --bundle directory does not load,
// compile or pass its tests (the operator's configuration must be right before the
// webhook serves), or when the ConfigMap informer cannot sync before ctx ends. Failing
// ConfigMap bundles are left out instead, with an Event and a metric, so the webhook
// becomes ready with the good ones. With no explicit bundle and no good ConfigMap
// bundle, Start returns nil and Ready reports why until a bundle arrives.
func (m *Manager) Start(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("policyset: Start called twice")
	}
	ctx, stop := context.WithCancel(ctx)
	if err := m.start(ctx); err != nil {
		stop() // what start set running stops
		go m.closeWhenStopped()
		return err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer stop()
		m.debounce.run(ctx, func() {
			if err := m.rebuild(ctx); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "Rebuilding the policy bundles failed; the active generation stays", "generation", m.Generation())
			}
		})
	}()
	go m.closeWhenStopped() // after every wg.Add
	return nil
}

// closeWhenStopped closes Done once every goroutine Start began has returned.
func (m *Manager) closeWhenStopped() {
	m.wg.Wait()
	close(m.done)
}

func (m *Manager) start(ctx context.Context) error {
	if m.opts.DefaultBundle {
		b, err := engine.LoadFS(policies.FS, DefaultBundleSource)
		if err != nil {
			return err
		}
		m.defaultBundle = defaultEntry(b, nil) // embedded: never changes, loaded once
	}
	// Watches start before the first read, so that no change between the first
	// generation and the watches is lost (a change already seen costs nothing).
	if len(m.opts.Dirs) > 0 {
		w, err := newDirWatcher(m.opts.Dirs, m.debounce.poke)
		if err != nil {
			return fmt.Errorf("watching the bundle directories: %w", err)
		}
		m.dirs = w
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			w.run(ctx)
		}()
	}
	if m.opts.configMapsEnabled() {
		if m.recorder == nil {
			m.recorder = startEventRecorder(ctx, m.opts.Client)
		}
		s, err := newConfigMapSource(m.opts.Client, m.opts.Namespace, m.selector, m.debounce.poke)
		if err != nil {
			return err
		}
		s.allowGrants = m.opts.AllowConfigMapGrants
		m.configMaps = s
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			<-ctx.Done()
			s.factory.Shutdown() // waits for the informer's goroutines
		}()
		if err := s.start(ctx); err != nil {
			return err
		}
	}
	return m.rebuild(ctx)
}

// Current returns the active generation's program, or nil while Ready reports an
// error. It only loads a pointer: it is meant for every admission request.
func (m *Manager) Current() *engine.Program {
	if g := m.gen.Load(); g != nil {
		return g.program
	}
	return nil
}

// Generation returns the active generation's number: 1 for the first, one more for
// each activation; 0 before the first.
func (m *Manager) Generation() uint64 {
	if g := m.gen.Load(); g != nil {
		return g.number
	}
	return 0
}

// Ready returns nil once a generation is active, and from then on.
func (m *Manager) Ready() error {
	if m.gen.Load() != nil {
		return nil
	}
	if why := m.notReady.Load(); why != nil {
		return errors.New(*why)
	}
	return errors.New("no policy bundle generation is active yet")
}

// Done is closed once the manager has stopped after Start's context ended (or Start
// failed): its watches are closed and no rebuild runs any more.
func (m *Manager) Done() <-chan struct{} { return m.done }
