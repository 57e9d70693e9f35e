package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The sandbox as an operator meets it. engine's tests check each refusal at the engine
// (TestCompileErrors, TestDeadlineStopsALoopingRule, TestMutationVocabulary); these
// check the message that reaches the operator: the one line `eval` prints on stderr
// with its exit code, and the Warning Event a refused bundle ConfigMap gets.

// sandboxCase is a site bundle with one policy p (rule data.site.sandbox.m) and what
// eval must say about it.
type sandboxCase struct {
	name     string
	grants   string // manifest lines (grants:)
	match    string // a CEL condition of p, if any
	rego     string // the module's body after the package line
	args     []string
	exit     int      // eval's exit code
	stderr   []string // all in eval's one line on stderr
	stdout   []string // with exit 0: in eval's patch
	served   bool     // also refused as a bundle ConfigMap (load-time refusals)
	eventHas []string // in the BundleRejected Event
}

func (c sandboxCase) files() map[string]string {
	manifest := "apiVersion: pod-identity-webhook.io/v1alpha1\nkind: Bundle\nname: site\n" + c.grants +
		"policies:\n  - name: p\n"
	if c.match != "" {
		manifest += "    match:\n      - name: c\n        expression: " + c.match + "\n"
	}
	manifest += "    rule: data.site.sandbox.m\n"
	return map[string]string{"manifest.yaml": manifest, "sandbox.rego": "package site.sandbox\n\n" + c.rego}
}

var sandboxCases = []sandboxCase{
	{name: "http.send", rego: "m := [x] if {\n\tx := http.send({\"method\": \"get\", \"url\": \"http://169.254.169.254/\"})\n}\n",
		exit: 2, stderr: []string{"sandbox.rego:4", "built-in http.send is not allowed", "policy p"},
		served: true, eventHas: []string{"sandbox.rego:4", "http.send"}},
	{name: "net.lookup_ip_addr", rego: "m := [x] if {\n\tx := net.lookup_ip_addr(\"example.com\")\n}\n",
		exit: 2, stderr: []string{"sandbox.rego:4", "net.lookup_ip_addr", "policy p"}},
	{name: "time.now_ns", rego: "m := [{\"op\": \"set-label\", \"key\": \"t\", \"value\": format_int(time.now_ns(), 10)}]\n",
		exit: 2, stderr: []string{"sandbox.rego:3", "time.now_ns", "policy p"}},
	{name: "rand.intn", rego: "m := [{\"op\": \"set-label\", \"key\": \"r\", \"value\": format_int(rand.intn(\"x\", 10), 10)}]\n",
		exit: 2, stderr: []string{"sandbox.rego:3", "rand.intn", "policy p"}},
	{name: "opa.runtime", rego: "m := [x] if {\n\tx := opa.runtime()\n}\n",
		exit: 2, stderr: []string{"sandbox.rego:4", "opa.runtime", "policy p"}},
	{name: "CEL over the cost limit",
		match: "object.spec.containers.all(a, object.spec.containers.all(b, object.spec.containers.all(c, a.name != b.name || b.name != c.name)))",
		rego:  "m := []\n",
		exit:  2, stderr: []string{"policies[0].match[0].expression", "worst-case cost", "exceeds the limit"},
		served: true, eventHas: []string{"worst-case cost"}},
	{name: "looping rule cut by the deadline", rego: "m := [{\"op\": \"set-label\", \"key\": \"n\", \"value\": format_int(count(xs), 10)}]\n" + loopingRego,
		args: []string{"--policy-timeout=300ms"},
		exit: 1, stderr: []string{"policy site/p failed", "per-request deadline"}},
	{name: "image refused", rego: "m := [{\"op\": \"json-patch\", \"patch\": [{\"op\": \"replace\", \"path\": \"/spec/containers/0/image\", \"value\": \"evil\"}]}]\n",
		exit: 1, stderr: []string{"policy site/p failed", "/spec/containers/0/image is not allowed"}},
	{name: "command refused", rego: "m := [{\"op\": \"json-patch\", \"patch\": [{\"op\": \"add\", \"path\": \"/spec/containers/0/command\", \"value\": [\"sh\"]}]}]\n",
		exit: 1, stderr: []string{"policy site/p failed", `container field "command"`}},
	{name: "privileged refused", rego: "m := [{\"op\": \"json-patch\", \"patch\": [{\"op\": \"add\", \"path\": \"/spec/containers/0/securityContext\", \"value\": {\"privileged\": true}}]}]\n",
		exit: 1, stderr: []string{"policy site/p failed", `container field "securityContext"`}},
	{name: "hostPath refused", rego: "m := [{\"op\": \"add-volume\", \"volume\": {\"name\": \"host\", \"hostPath\": {\"path\": \"/\"}}}]\n",
		exit: 1, stderr: []string{"policy site/p failed", `volume type "hostPath"`}},
	{name: "hostPath granted", grants: "grants:\n  volumeTypes: [hostPath]\n",
		rego: "m := [{\"op\": \"add-volume\", \"volume\": {\"name\": \"host\", \"hostPath\": {\"path\": \"/\"}}}]\n",
		exit: 0, stdout: []string{`"hostPath"`, `"path": "/"`}},
	{name: "image granted", grants: "grants:\n  paths: [/spec/containers/*/image]\n",
		rego: "m := [{\"op\": \"json-patch\", \"patch\": [{\"op\": \"replace\", \"path\": \"/spec/containers/0/image\", \"value\": \"registry.example.com/app:2\"}]}]\n",
		exit: 0, stdout: []string{`"/spec/containers/0/image"`, `registry.example.com/app:2`}},
}

// TestSandboxEval runs each case through `pod-identity-webhook eval --bundle DIR` on the
// sample pod: a refused built-in or an over-cost CEL expression is bad input (exit 2)
// whose one line names the file and line (or the manifest field), the reason and the
// policy; a rule cut by the deadline or a mutation outside the guardrails is a failed
// policy (exit 1) named bundle/policy; a granted mutation passes (exit 0).
func TestSandboxEval(t *testing.T) {
	t.Parallel()
	bin := BuildBinary(t, WebhookPackage)
	pod := filepath.Join(repoRoot, "samples", "pod.yaml")
	sa := filepath.Join(repoRoot, "samples", "serviceaccount.yaml")
	for _, c := range sandboxCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "site")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range c.files() {
				writeFile(t, dir, name, []byte(content))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			args := append([]string{"eval", "--pod", pod, "--service-account", sa, "--bundle", dir, "-o", "patch"}, c.args...)
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Dir = t.TempDir()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			msg := stderr.String()
			t.Logf("exit %d; stderr: %s", code, strings.TrimSpace(msg))
			if code != c.exit {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, c.exit, msg)
			}
			if c.exit != 0 && strings.Count(strings.TrimRight(msg, "\n"), "\n") != 0 {
				t.Errorf("stderr should be one line:\n%s", msg)
			}
			if c.exit == 2 && !strings.Contains(msg, dir) {
				t.Errorf("stderr should name the bundle %s: %s", dir, msg)
			}
			for _, want := range c.stderr {
				if !strings.Contains(msg, want) {
					t.Errorf("stderr lacks %q: %s", want, msg)
				}
			}
			for _, want := range c.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("the patch lacks %q:\n%s", want, stdout.String())
				}
			}
		})
	}
}

// TestSandboxServed: the load-time refusals as a bundle ConfigMap meets them in a
// running webhook: the ConfigMap gets a Warning Event BundleRejected whose message
// names the ConfigMap's key and line (or the manifest field) and the reason, the
// refusal is counted in pod_identity_webhook_bundle_load_failures_total, and pods go on
// getting the default bundle.
func TestSandboxServed(t *testing.T) {
	t.Parallel()
	ns := cluster.CreateNamespace(t, nil)
	role := RoleARN(ns, "app")
	cluster.CreateServiceAccount(t, ns, "app", map[string]string{RoleAnnotation: role})
	wh := StartWebhookAndRegister(t, WebhookOptions{Namespace: ns}, WebhookRegistration{},
		SimplePod(ns, "probe", "app"), func(p *corev1.Pod) bool { return WebIdentityInjected(p, "app", role) })
	failuresBefore := wh.Metric(t, "pod_identity_webhook_bundle_load_failures_total", nil)
	var served []sandboxCase
	for _, c := range sandboxCases {
		if c.served {
			served = append(served, c)
		}
	}
	for _, c := range served {
		name := "site-" + dnsLabel(c.name, 40)
		if _, err := cluster.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: bundleLabel}, Data: c.files(),
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ev := cluster.WaitForEvent(t, ns, "ConfigMap", name, corev1.EventTypeWarning, "BundleRejected", DefaultWait)
		t.Logf("%s: Event %s: %s", c.name, ev.Reason, ev.Message)
		for _, want := range c.eventHas {
			if !strings.Contains(ev.Message, want) {
				t.Errorf("%s: the Event should contain %q: %s", c.name, want, ev.Message)
			}
		}
		// Rejected ConfigMaps stay in the namespace and are left out of every later
		// generation; delete this one so the next case is judged alone.
		if err := cluster.Client.CoreV1().ConfigMaps(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := wh.Metric(t, "pod_identity_webhook_bundle_load_failures_total", nil) - failuresBefore; got < float64(len(served)) {
		t.Errorf("pod_identity_webhook_bundle_load_failures_total went up by %v, want at least %d", got, len(served))
	}
	pod := cluster.CreatePod(t, SimplePod(ns, "after", "app"))
	if !WebIdentityInjected(pod, "app", role) {
		t.Fatalf("the default bundle should still apply: %s", podJSON(t, pod))
	}
}
