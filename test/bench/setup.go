package bench

import (
	"context"
	"net/http"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
	"github.com/pod-identity-webhook/pod-identity-webhook/policies"
	"github.com/pod-identity-webhook/pod-identity-webhook/sources"
	"github.com/pod-identity-webhook/pod-identity-webhook/test/bench/reviews"
	"github.com/pod-identity-webhook/pod-identity-webhook/webhook"
)

// BenchConfig is the configuration every benchmark and load run uses, as in the
// performance notes: upstream's defaults plus --aws-default-region us-west-2.
func BenchConfig() *config.Config {
	c := config.Defaults()
	c.AWSDefaultRegion = "us-west-2"
	return &c
}

// ServiceAccount is benchdata's ServiceAccount. Matched: role-arn,
// sts-regional-endpoints true and token-expiration 86400, so every container gets 5
// env vars and the mount; unmatched: no annotations, so no policy applies.
func ServiceAccount(matched bool) *engine.ServiceAccount {
	sa := &engine.ServiceAccount{Name: benchdata.ServiceAccount, Namespace: benchdata.Namespace, ResourceVersion: "1"}
	if matched {
		sa.Annotations = map[string]string{
			"eks.amazonaws.com/role-arn":               benchdata.RoleARN,
			"eks.amazonaws.com/sts-regional-endpoints": "true",
			"eks.amazonaws.com/token-expiration":       "86400",
		}
	}
	return sa
}

// CompileDefault compiles the embedded default bundle with cfg's flags, as the server's
// policyset does for its first generation.
func CompileDefault(ctx context.Context, cfg *config.Config) (*engine.Program, error) {
	return compileDefault(ctx, cfg.EngineOptions())
}

// CompileDefaultCold is CompileDefault with no cache of what pods repeat (the name
// sets of their env and volumeMount lists): every miss is a cold one.
func CompileDefaultCold(ctx context.Context, cfg *config.Config) (*engine.Program, error) {
	opts := cfg.EngineOptions()
	opts.NameSetCacheSize = -1
	return compileDefault(ctx, opts)
}

func compileDefault(ctx context.Context, opts engine.Options) (*engine.Program, error) {
	b, err := engine.LoadFS(policies.FS, "embedded default bundle")
	if err != nil {
		return nil, err
	}
	return engine.Compile(ctx, []*engine.Bundle{b}, opts)
}

// NewHandler is the real /mutate handler (webhook.Handler with metrics, the shared
// admission path, sources.Static) around a compiled program. The server wraps it
// further in its instrument and recover middleware; the load tool measures that.
func NewHandler(prog *engine.Program, sas ...*engine.ServiceAccount) http.Handler {
	return &webhook.Handler{
		Admitter: &admission.Admitter{
			Program: func() *engine.Program { return prog },
			Sources: &sources.Static{ServiceAccounts: sas},
		},
		Metrics: metrics.New(),
	}
}

// NewTemplate is benchdata's review of the given size, ready to be varied per request.
func NewTemplate(size benchdata.Size) *reviews.Template { return reviews.Benchdata(size) }
