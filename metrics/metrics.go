// Package metrics defines every Prometheus metric the webhook exports, in one place so
// that names stay stable for dashboards. Upstream's metric names and labels are kept;
// the pod_identity_webhook_* metrics after them are this project's.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Admission latency buckets in seconds: sub-millisecond resolution where a healthy
// webhook lives, up to the webhook timeout.
var latencyBuckets = []float64{
	0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.00075,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// Metrics holds the webhook's metrics, registered in Registry.
type Metrics struct {
	Registry *prometheus.Registry

	// Upstream's, same names and labels.
	HTTPRequestCount     *prometheus.CounterVec   // http_request_count{verb,path,code}
	HTTPRequestLatencies *prometheus.HistogramVec // http_request_latencies{verb,path}, microseconds
	HTTPRequestDuration  *prometheus.SummaryVec   // http_request_duration_microseconds{verb,path}
	PodCount             *prometheus.CounterVec   // pod_identity_webhook_pod_count{method}
	MissingSACount       prometheus.Counter       // pod_identity_webhook_missing_sa_count
	Used                 prometheus.Gauge         // pod_identity_webhook_used

	// This project's.
	AdmissionDuration  *prometheus.HistogramVec // pod_identity_webhook_admission_duration_seconds{result}
	Admissions         *prometheus.CounterVec   // pod_identity_webhook_admissions_total{result,reason}
	PolicyDuration     *prometheus.HistogramVec // pod_identity_webhook_policy_evaluation_duration_seconds{bundle,policy}
	PolicyErrors       *prometheus.CounterVec   // pod_identity_webhook_policy_errors_total{bundle,policy}
	MachineFailures    *prometheus.CounterVec   // pod_identity_webhook_ir_machine_failures_total{bundle,policy}
	BundleGeneration   prometheus.Gauge         // pod_identity_webhook_bundle_generation
	BundleLoadFailures *prometheus.CounterVec   // pod_identity_webhook_bundle_load_failures_total{source}
	BundleActive       *prometheus.GaugeVec     // pod_identity_webhook_bundle_active{bundle,source}
	SACacheMisses      prometheus.Counter       // pod_identity_webhook_serviceaccount_cache_misses_total
	SAGraceWaits       *prometheus.CounterVec   // pod_identity_webhook_serviceaccount_grace_waits_total{outcome}
	SAFetches          *prometheus.CounterVec   // pod_identity_webhook_serviceaccount_fetches_total{outcome}
	SourceUpdates      *prometheus.CounterVec   // pod_identity_webhook_source_updates_total{source,outcome}
	SourceProblems     *prometheus.CounterVec   // pod_identity_webhook_source_problems_total{source}
}

// New creates the metrics in a fresh registry, with Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		HTTPRequestCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_request_count", Help: "Requests on the instrumented routes (upstream metric).",
		}, []string{"verb", "path", "code"}),
		HTTPRequestLatencies: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_latencies", Help: "Request latency in microseconds (upstream metric and buckets).",
			Buckets: prometheus.ExponentialBuckets(125000, 2, 7),
		}, []string{"verb", "path"}),
		HTTPRequestDuration: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name: "http_request_duration_microseconds", Help: "Request latency in microseconds (upstream metric).",
			MaxAge: 3600e9,
		}, []string{"verb", "path"}),
		PodCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_pod_count", Help: "Admissions that gave a pod an identity, by method: sts_web_identity or container_credentials (upstream metric).",
		}, []string{"method"}),
		MissingSACount: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pod_identity_webhook_missing_sa_count", Help: "ServiceAccounts not found, after the grace period if any (upstream metric).",
		}),
		Used: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pod_identity_webhook_used", Help: "1 once any ServiceAccount is in the cache (upstream metric).",
		}),
		AdmissionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pod_identity_webhook_admission_duration_seconds", Help: "Time to answer an admission request, from body read to response written.",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		Admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_admissions_total", Help: "Admission requests by result (mutated, unmutated, denied, error) and reason.",
		}, []string{"result", "reason"}),
		PolicyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pod_identity_webhook_policy_evaluation_duration_seconds", Help: "Time one policy took (match and rule) for one pod.",
			Buckets: latencyBuckets,
		}, []string{"bundle", "policy"}),
		PolicyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_policy_errors_total", Help: "Policy failures at admission (CEL or Rego errors, deadline, refused mutations).",
		}, []string{"bundle", "policy"}),
		MachineFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_ir_machine_failures_total", Help: "Rules the IR machine failed on (a bug of the machine; the rule was evaluated by topdown instead).",
		}, []string{"bundle", "policy"}),
		BundleGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pod_identity_webhook_bundle_generation", Help: "Generation number of the active policy bundles; goes up on every successful reload.",
		}),
		BundleLoadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_bundle_load_failures_total", Help: "Bundle reloads refused (load, compile or test failure); the previous generation stays active.",
		}, []string{"source"}),
		BundleActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pod_identity_webhook_bundle_active", Help: "1 for each bundle in the active generation.",
		}, []string{"bundle", "source"}),
		SACacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pod_identity_webhook_serviceaccount_cache_misses_total", Help: "Lookups of a ServiceAccount that was not in the cache.",
		}),
		SAGraceWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_serviceaccount_grace_waits_total", Help: "Requests that waited for a missing ServiceAccount, by outcome (found, timeout).",
		}, []string{"outcome"}),
		SAFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_serviceaccount_fetches_total", Help: "ServiceAccount GETs to the API server for cache misses, by outcome (found, not_found, error, dropped).",
		}, []string{"outcome"}),
		SourceUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_source_updates_total", Help: "Updates of the file and ConfigMap sources, by source (configmap, identities) and outcome (applied, rejected).",
		}, []string{"source", "outcome"}),
		SourceProblems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_identity_webhook_source_problems_total", Help: "Entries skipped in a source (e.g. a ConfigMap key without '/').",
		}, []string{"source"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.HTTPRequestCount, m.HTTPRequestLatencies, m.HTTPRequestDuration, m.PodCount, m.MissingSACount, m.Used,
		m.AdmissionDuration, m.Admissions, m.PolicyDuration, m.PolicyErrors, m.MachineFailures, m.BundleGeneration,
		m.BundleLoadFailures, m.BundleActive, m.SACacheMisses, m.SAGraceWaits, m.SAFetches, m.SourceUpdates, m.SourceProblems,
	)
	return m
}
