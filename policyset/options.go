package policyset

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// DefaultBundleSource names the embedded default bundle in messages and metrics.
const DefaultBundleSource = "embedded default bundle"

// OrderAnnotation on a bundle ConfigMap places it among the ConfigMap bundles: an
// integer, default 0, lower first; ties are broken by name. ConfigMap bundles always
// run after the default bundle and the --bundle directories.
const OrderAnnotation = "pod-identity-webhook.io/bundle-order"

// Defaults of Options.
const (
	// DefaultDebounce lets a burst of changes (an editor saving several files, the
	// kubelet swapping a ConfigMap volume, `kubectl apply` of several ConfigMaps)
	// settle into one rebuild.
	DefaultDebounce = 500 * time.Millisecond
	// DefaultTestTimeout bounds one run of the bundles' Rego tests, so a runaway test
	// cannot stall every later reload.
	DefaultTestTimeout = time.Minute
)

// Options configure a Manager.
type Options struct {
	// DefaultBundle includes the embedded default bundle (policies.FS), first.
	DefaultBundle bool
	// Dirs are the --bundle directories, run after the default bundle in this order.
	Dirs []string

	// Client reads the bundle ConfigMaps and, when Recorder is nil, receives the
	// Events. Nil means no ConfigMap bundles and no Events.
	Client kubernetes.Interface
	// Namespace holds the bundle ConfigMaps.
	Namespace string
	// Selector is the label selector of the bundle ConfigMaps; empty turns ConfigMap
	// bundles off.
	Selector string
	// AllowConfigMapGrants lets bundle ConfigMaps use grants (--allow-configmap-bundle-grants).
	AllowConfigMapGrants bool

	// Compile are the engine options every generation is compiled with.
	Compile engine.Options
	// Metrics receive the bundle metrics; nil records none.
	Metrics *metrics.Metrics
	// Recorder records the Events on bundle ConfigMaps. Nil means an EventBroadcaster
	// writing to Client's API server as component pod-identity-webhook (or no Events
	// without a Client). Tests inject record.NewFakeRecorder or their own.
	Recorder record.EventRecorder

	// Debounce is how long changes must be quiet before a rebuild; zero means
	// DefaultDebounce. A rebuild happens at the latest 10 debounce periods after the
	// first change of a burst.
	Debounce time.Duration
	// TestTimeout bounds each run of the Rego tests; zero means DefaultTestTimeout.
	TestTimeout time.Duration
}

// OptionsFromConfig fills the options the configuration decides: the default bundle,
// the directories, the ConfigMap namespace and selector, and the compile options.
// Client, Metrics and Recorder are the caller's.
func OptionsFromConfig(cfg *config.Config) Options {
	return Options{
		DefaultBundle:        !cfg.NoDefaultBundle,
		Dirs:                 append([]string(nil), cfg.Bundles...),
		Namespace:            cfg.Namespace,
		Selector:             cfg.BundleConfigMapSelector,
		AllowConfigMapGrants: cfg.AllowConfigMapGrants,
		Compile:              cfg.EngineOptions(),
	}
}

// configMapsEnabled reports whether ConfigMap bundles are read at all.
func (o *Options) configMapsEnabled() bool { return o.Client != nil && o.Selector != "" }

// validate checks the options and fills in the defaults.
func (o *Options) validate() (labels.Selector, error) {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.TestTimeout <= 0 {
		o.TestTimeout = DefaultTestTimeout
	}
	if !o.DefaultBundle && len(o.Dirs) == 0 && !o.configMapsEnabled() {
		return nil, fmt.Errorf("no policy bundles: the default bundle is left out, and there are no bundle directories and no bundle ConfigMaps")
	}
	if !o.configMapsEnabled() {
		return nil, nil
	}
	if o.Namespace == "" {
		return nil, fmt.Errorf("bundle ConfigMaps: the namespace must be set")
	}
	sel, err := labels.Parse(o.Selector)
	if err != nil {
		return nil, fmt.Errorf("bundle ConfigMap selector %q: %w", o.Selector, err)
	}
	return sel, nil
}
