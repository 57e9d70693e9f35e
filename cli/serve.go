package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/gctune"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
	"github.com/pod-identity-webhook/pod-identity-webhook/policyset"
	"github.com/pod-identity-webhook/pod-identity-webhook/sources"
	"github.com/pod-identity-webhook/pod-identity-webhook/webhook"
)

const serveLong = `serve runs the admission webhook: /mutate over TLS, /healthz and /readyz, and
/metrics on the metrics port. It is also what runs when pod-identity-webhook is given
only flags, so an upstream Deployment's arguments work unchanged:

  pod-identity-webhook --in-cluster=false --tls-cert=/etc/webhook/certs/tls.crt \
    --tls-key=/etc/webhook/certs/tls.key --namespace=pod-identity-webhook

Every flag can also be set in a --config file (keys are flag names) or as a PIW_*
environment variable (PIW_AWS_DEFAULT_REGION for --aws-default-region); flags win over
the environment, which wins over the file.`

// addServeFlags adds everything serve accepts, klog's flags included (upstream accepts
// -v, --logtostderr and the rest).
func addServeFlags(fs *pflag.FlagSet) {
	config.AddMutationFlags(fs)
	config.AddPolicyFlags(fs)
	config.AddClusterFlags(fs)
	config.AddServeFlags(fs)
	gofs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(gofs)
	fs.AddGoFlagSet(gofs)
}

func newServeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run the admission webhook (the default command)",
		Long:  serveLong,
		Args:  cobra.NoArgs,
		RunE:  runServe,
	}
	addServeFlags(cmd.Flags())
	return cmd
}

func runServe(cmd *cobra.Command, _ []string) error {
	cfg, err := config.Load(cmd.Flags(), os.Environ())
	if err != nil {
		return usageError("%v", err)
	}
	if cfg.Version {
		_, err := fmt.Fprintln(cmd.OutOrStdout(), Version)
		return err
	}
	if cfg.InCluster {
		return usageError("--in-cluster=true (upstream's default) asks for a certificate through a CSR signed by kubernetes.io/legacy-unknown, " +
			"which no longer works (upstream's README says so since v0.3.0): run with --in-cluster=false and give the serving certificate " +
			"with --tls-cert and --tls-key, for example from cert-manager (see deploy/)")
	}
	ctx, stop := signalContext()
	defer stop()

	rc, err := restConfig(cfg)
	if err != nil {
		return usageError("Kubernetes client configuration: %v (use --kubeconfig, or run in a pod)", err)
	}
	client, err := kubeClientFor(rc)
	if err != nil {
		return usageError("Kubernetes client: %v", err)
	}
	if err := composeRoleARNParams(ctx, cfg); err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	m := metrics.New()

	src, err := sources.NewCluster(client, sources.Options{
		AnnotationPrefix: cfg.AnnotationPrefix,
		ResyncPeriod:     cfg.ResyncPeriod,
		GracePeriod:      cfg.ServiceAccountLookupGracePeriod,
		WatchConfigMap:   cfg.WatchConfigMap,
		Namespace:        cfg.Namespace,
		IdentitiesFile:   cfg.WatchContainerCredentialsConfig,
		WatchNamespaces:  cfg.WatchNamespaces,
		Metrics:          m,
	})
	if err != nil {
		return usageError("%v", err)
	}
	popts := policyset.OptionsFromConfig(cfg)
	popts.Client, popts.Metrics = client, m
	bundles, err := policyset.New(popts)
	if err != nil {
		return usageError("%v", err)
	}
	admitter := &admission.Admitter{Program: bundles.Current, Sources: src, Workers: runtime.GOMAXPROCS(0)}
	defer admitter.Close()
	srv, err := webhook.New(webhook.Options{
		Port:                    cfg.Port,
		MetricsPort:             cfg.MetricsPort,
		TLSCert:                 cfg.TLSCert,
		TLSKey:                  cfg.TLSKey,
		TLSCipherSuites:         cfg.TLSCipherSuites,
		TLSMinVersion:           cfg.TLSMinVersion,
		EnableDebuggingHandlers: cfg.EnableDebuggingHandlers,
		ShutdownDelay:           cfg.ShutdownDelay,
		ShutdownGracePeriod:     cfg.ShutdownGracePeriod,
		Ready:                   func() error { return errors.Join(src.Ready(), bundles.Ready()) },
		Admitter:                admitter,
		Metrics:                 m,
		Debug:                   src,
	})
	if err != nil {
		return usageError("%v", err)
	}

	gc := gctune.ApplyFromOS()
	klog.InfoS("garbage collector", "gcPercent", gc.GCPercent, "memoryLimitBytes", gc.MemoryLimit, "from", gc.Source)
	klog.InfoS("starting pod-identity-webhook", "version", Version, "port", cfg.Port, "metricsPort", cfg.MetricsPort,
		"namespace", cfg.Namespace, "watchConfigMap", cfg.WatchConfigMap,
		"identitiesFile", cfg.WatchContainerCredentialsConfig, "gracePeriod", cfg.ServiceAccountLookupGracePeriod)
	// Sources start their informers and watchers and return; they report readiness
	// through Ready, which gates /mutate and /readyz.
	if err := src.Start(ctx); err != nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("sources: %w", err)}
	}
	if err := bundles.Start(ctx); err != nil {
		// The embedded bundle and --bundle directories are the operator's own
		// configuration: a broken one stops the process rather than serve without it.
		return &ExitError{Code: 1, Err: fmt.Errorf("policy bundles: %w", err)}
	}
	// Run returns once the server has shut down: ctx cancelled by a signal, or a
	// listener failed.
	if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return &ExitError{Code: 1, Err: fmt.Errorf("webhook server: %w", err)}
	}
	klog.InfoS("stopped")
	return nil
}

// signalContext is cancelled by SIGINT or SIGTERM; a second signal exits at once.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-ch
		klog.InfoS("shutting down", "signal", s.String())
		cancel()
		<-ch
		klog.InfoS("second signal: exiting now")
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
