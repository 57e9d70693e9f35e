package cli

import (
	"context"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
	"github.com/pod-identity-webhook/pod-identity-webhook/policyset"
)

// loadBundles loads the embedded default bundle (unless left out) and the --bundle
// directories, in order.
func loadBundles(cfg *config.Config) ([]*engine.Bundle, error) {
	var bundles []*engine.Bundle
	if !cfg.NoDefaultBundle {
		b, err := engine.LoadFS(policies.FS, policyset.DefaultBundleSource)
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

// loadProgram loads and compiles the configured bundles.
func loadProgram(ctx context.Context, cfg *config.Config) (*engine.Program, error) {
	bundles, err := loadBundles(cfg)
	if err != nil {
		return nil, err
	}
	return engine.Compile(ctx, bundles, cfg.EngineOptions())
}
