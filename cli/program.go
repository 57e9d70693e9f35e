package cli

import (
	"context"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
)

// DefaultBundleSource names the embedded default bundle in messages.
const DefaultBundleSource = "embedded default bundle"

// loadBundles loads the embedded default bundle (unless left out) and the --bundle
// directories, in order.
func loadBundles(cfg *config.Config) ([]*engine.Bundle, error) {
	var bundles []*engine.Bundle
	if !cfg.NoDefaultBundle {
		b, err := engine.LoadFS(policies.FS, DefaultBundleSource)
		if err != nil {
			return nil, err
		}
		bundles = append(bundles, b)
	}
	for _, dir := range cfg.Bundles {
		b, err := engine.LoadDir(dir)
		if err != nil {
			return nil, err
		}
		bundles = append(bundles, b)
	}
	return bundles, nil
}

// compileOptions are the engine options the configuration asks for.
func compileOptions(cfg *config.Config) engine.Options {
	return engine.Options{Params: cfg.Params(), EvalTimeout: cfg.PolicyTimeout, CELCostLimit: cfg.CELCostLimit}
}

// loadProgram loads and compiles the configured bundles.
func loadProgram(ctx context.Context, cfg *config.Config) (*engine.Program, error) {
	bundles, err := loadBundles(cfg)
	if err != nil {
		return nil, err
	}
	return engine.Compile(ctx, bundles, compileOptions(cfg))
}
