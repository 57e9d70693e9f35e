package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// WebhookPackage is the webhook's main package, relative to the repository root.
const WebhookPackage = "./cmd/pod-identity-webhook"

// WebhookOptions start the real webhook binary against the test cluster.
type WebhookOptions struct {
	// Namespace is --namespace (where the webhook "runs": its ConfigMaps live there).
	Namespace string
	// Args are appended after the harness's flags (later flags win).
	Args []string
	// CertFile and KeyFile default to the harness's webhook serving certificate.
	CertFile, KeyFile string
	// Env is the process environment; nil inherits the test binary's.
	Env []string
	// ReadyTimeout bounds the wait for /readyz (default 60 s).
	ReadyTimeout time.Duration
}

// Webhook is a running webhook process.
type Webhook struct {
	*Process
	Port        int    // HTTPS admission port (register it with WebhookRegistration{Port: w.Port})
	MetricsPort int    // plain HTTP: /metrics, /healthz, /readyz
	MetricsURL  string // http://127.0.0.1:<MetricsPort>
}

// StartWebhook builds the webhook (once per run), starts it with
//
//	serve --in-cluster=false --kubeconfig=<admin kubeconfig> --tls-cert=<cert> --tls-key=<key>
//	      --port=<free> --metrics-port=<free> --namespace=<ns> <o.Args...>
//
// and waits until GET /readyz on the metrics port answers 200. The process is stopped
// when the test ends and its log is printed if the test failed. Register it afterwards
// with RegisterWebhook and wait for it with WaitForMutation.
func StartWebhook(t testing.TB, o WebhookOptions) *Webhook {
	t.Helper()
	bin := BuildBinary(t, WebhookPackage)
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := o.CertFile, o.KeyFile
	if cert == "" {
		cert, key = cluster.PKI.WebhookCertFile, cluster.PKI.WebhookKeyFile
	}
	ns := o.Namespace
	if ns == "" {
		ns = "default"
	}
	args := append([]string{
		"serve",
		"--in-cluster=false",
		"--kubeconfig=" + cluster.KubeconfigPath,
		"--tls-cert=" + cert,
		"--tls-key=" + key,
		"--port=" + strconv.Itoa(ports[0]),
		"--metrics-port=" + strconv.Itoa(ports[1]),
		"--namespace=" + ns,
	}, o.Args...)
	w := &Webhook{
		Process:     StartProcess(t, "pod-identity-webhook", bin, args, StartProcessOptions{Env: o.Env}),
		Port:        ports[0],
		MetricsPort: ports[1],
		MetricsURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
	}
	timeout := o.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	start := time.Now()
	WaitHTTPOK(t, w.Process, w.MetricsURL+"/readyz", timeout)
	t.Logf("webhook ready after %s (admission :%d, metrics :%d)", time.Since(start).Round(time.Millisecond), w.Port, w.MetricsPort)
	return w
}
