// Command serverless is the webhook server without a cluster, for load runs: the real
// webhook.Server (TLS with certificate reload, HTTP/2, the instrument and recover
// middleware, metrics, /healthz and /readyz), the real admission.Admitter and a
// policyset.Manager with the embedded default bundle (plus any --bundle directories),
// exactly as `pod-identity-webhook serve` wires them. The one difference from serve is
// the sources: a sources.Static holding benchdata's ServiceAccount
// (payments/payments-sa with role-arn, sts-regional-endpoints=true and
// token-expiration=86400) instead of the informer-backed sources.Cluster, whose
// lookup on the request path is a map read either way. No ConfigMap bundles, no
// Events (they need an API server).
//
// With --reference the same server serves test/bench's plain-Go reference as its
// Admitter instead of the policy engine, so both are measured through the identical
// TLS, HTTP/2 and handler stack: only the decision differs.
//
//	go run ./test/load/gencert -dir /tmp/piw
//	go run ./test/load/serverless --cert /tmp/piw/tls.crt --key /tmp/piw/tls.key --gomaxprocs 1
//
// The mutation flags of serve are accepted (--aws-default-region defaults to
// us-west-2 here, as in the benchmarks).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/internal/gctune"
	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
	"github.com/pod-identity-webhook/pod-identity-webhook/policyset"
	"github.com/pod-identity-webhook/pod-identity-webhook/sources"
	"github.com/pod-identity-webhook/pod-identity-webhook/test/bench"
	"github.com/pod-identity-webhook/pod-identity-webhook/webhook"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "serverless:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := pflag.NewFlagSet("serverless", pflag.ContinueOnError)
	config.AddMutationFlags(fs)
	config.AddPolicyFlags(fs)
	host := fs.String("host", "127.0.0.1", "Address to bind; empty means all interfaces")
	port := fs.Int("port", 8443, "TLS port of /mutate, /healthz and /readyz")
	metricsPort := fs.Int("metrics-port", 9998, "Plain-HTTP port of /metrics")
	cert := fs.String("cert", "", "Serving certificate file (test/load/gencert writes one)")
	key := fs.String("key", "", "Serving key file")
	gomaxprocs := fs.Int("gomaxprocs", 0, "Set GOMAXPROCS (0 leaves Go's default: the CPUs of the affinity mask)")
	reference := fs.Bool("reference", false, "Serve test/bench's plain-Go reference instead of the policy engine")
	matched := fs.Bool("matched", true, "Give the ServiceAccount its role-arn annotations (false: no policy applies)")
	gofs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(gofs)
	fs.AddGoFlagSet(gofs)
	if err := fs.Set("aws-default-region", "us-west-2"); err != nil {
		return err
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if *cert == "" || *key == "" {
		return errors.New("--cert and --key are required (go run ./test/load/gencert writes a pair)")
	}
	if *gomaxprocs > 0 {
		runtime.GOMAXPROCS(*gomaxprocs)
	}
	// The garbage collector as serve sets it, for the reference too.
	gc := gctune.ApplyFromOS()
	klog.InfoS("garbage collector", "gcPercent", gc.GCPercent, "memoryLimitBytes", gc.MemoryLimit, "from", gc.Source)
	cfg, err := config.Load(fs, os.Environ())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := metrics.New()
	sa := bench.ServiceAccount(*matched)
	var admitter webhook.Admitter
	var ready func() error
	mode := "engine"
	if *reference {
		mode = "reference"
		admitter = bench.NewReference(bench.RefConfigFrom(cfg), sa)
	} else {
		popts := policyset.OptionsFromConfig(cfg)
		popts.Metrics = m
		bundles, err := policyset.New(popts)
		if err != nil {
			return err
		}
		if err := bundles.Start(ctx); err != nil {
			return fmt.Errorf("policy bundles: %w", err)
		}
		admitter = &admission.Admitter{Program: bundles.Current, Sources: &sources.Static{ServiceAccounts: []*engine.ServiceAccount{sa}}, Workers: runtime.GOMAXPROCS(0)}
		ready = bundles.Ready
	}
	srv, err := webhook.New(webhook.Options{
		Host: *host, Port: *port, MetricsPort: *metricsPort,
		TLSCert: *cert, TLSKey: *key,
		ShutdownGracePeriod: 5 * time.Second,
		Ready:               ready,
		Admitter:            admitter,
		Metrics:             m,
	})
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-srv.Started():
			addr, maddr := srv.Addrs()
			fmt.Printf("serving %s: https://%s/mutate (metrics http://%s/metrics), pid %d, GOMAXPROCS %d\n",
				mode, addr, maddr, os.Getpid(), runtime.GOMAXPROCS(0))
		case <-ctx.Done():
		}
	}()
	return srv.Run(ctx)
}
