package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/reviewclient"
)

// TestLoadUnderChurn: the real webhook, started against the real API server and
// registered, answers AdmissionReviews sent straight to its TLS port at 500 req/s
// (open loop, HTTP/2) for 60 s while
//
//   - a site bundle ConfigMap is rewritten every second, alternating two valid
//     versions (a label value "a" / "b"), so policy generations really change under
//     load, and
//   - eight ServiceAccounts are created and deleted continually (one operation every
//     100 ms; half of them carry a role annotation), with the deployed
//     --service-account-lookup-grace-period=2s, so requests for them wait for, and
//     fetch, ServiceAccounts that come and go.
//
// The traffic mixes three pod templates (as the API server sends them: defaulted by a
// dry-run create) over four stable ServiceAccounts (IRSA, IRSA with tuning
// annotations, EKS Pod Identity from the identities file, none) and, for one request in
// ten, the churned ServiceAccounts; one request in four carries a unique annotation,
// so it misses the per-template memo and is evaluated in full.
//
// It asserts: no transport or HTTP error and no denial; every answer for a stable
// ServiceAccount carries exactly the patch `pod-identity-webhook eval` gives for the
// same review and ServiceAccount with bundle version a or b (computed once per
// template, ServiceAccount and version before the run); answers for churned
// ServiceAccounts carry the version label and never another ServiceAccount's role;
// both versions were served; and no goroutine or heap growth: go_goroutines after the
// run and a settle period is within +10 of its value after the warm-up and the same
// settle period, and the heap is within +25% (see heapVerdict for which heap figure
// and why).
//
// It is not parallel, so it runs alone before the parallel tests start: its latency and
// CPU figures are then its own. E2E_CHURN_RATE, E2E_CHURN_DURATION and
// E2E_CHURN_WARMUP change the rate (500), the measured duration (60s) and the warm-up
// (5s). docs/hardening.md has the command line to run just this test.
func TestLoadUnderChurn(t *testing.T) {
	cfg := churnConfigFromEnv(t)
	ns := cluster.CreateNamespace(t, nil)
	dir := t.TempDir()

	// --- ServiceAccounts, the identities file, the bundle versions --------------------
	stable := []struct {
		name        string
		annotations map[string]string
	}{
		{"irsa", map[string]string{RoleAnnotation: RoleARN(ns, "irsa")}},
		{"irsa-tuned", map[string]string{RoleAnnotation: RoleARN(ns, "irsa-tuned"),
			"eks.amazonaws.com/sts-regional-endpoints": "true", "eks.amazonaws.com/token-expiration": "7200",
			"eks.amazonaws.com/audience": "sts.example.com"}},
		{"pod-identity", nil},
		{"plain", nil},
	}
	for _, sa := range stable {
		cluster.CreateServiceAccount(t, ns, sa.name, sa.annotations)
	}
	idFile := writeFile(t, dir, "identities.json", []byte(identitiesJSON(t, ns, "pod-identity")))
	churners := make([]churnSA, 8)
	for i := range churners {
		churners[i] = churnSA{name: fmt.Sprintf("churn-%d", i)}
		if i%2 == 0 {
			churners[i].role = RoleARN(ns, churners[i].name)
		}
		cluster.CreateServiceAccount(t, ns, churners[i].name, churners[i].annotations())
		churners[i].exists = true
	}
	bundleDirs := map[string]string{}
	for _, v := range churnVersions {
		bundleDirs[v] = filepath.Join(dir, "bundle-"+v)
		if err := os.MkdirAll(bundleDirs[v], 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range churnBundle(v) {
			writeFile(t, bundleDirs[v], name, []byte(content))
		}
	}
	// The flags eval shares with serve; serve also gets the deployed grace period.
	flags := []string{"--aws-default-region=us-west-2", "--watch-container-credentials-config=" + idFile}

	// --- the traffic: reviews of pods as the API server sends them -------------------
	var items []*loadItem
	for _, tpl := range churnTemplates {
		for _, sa := range stable {
			items = append(items, newLoadItem(t, ns, tpl, sa.name, true, ""))
		}
	}
	stableCount := len(items)
	for i := range churners {
		items = append(items, newLoadItem(t, ns, churnTemplates[0], churners[i].name, false, churners[i].role))
	}

	// --- expected patches, from eval, while the webhook starts and warms up -----------
	BuildBinary(t, WebhookPackage)
	evalsDone := make(chan struct{})
	go func() {
		defer close(evalsDone)
		start := time.Now()
		expectPatches(t, ns, items[:stableCount], dir, bundleDirs, flags)
		t.Logf("eval gave the expected patches of %d reviews × %d bundle versions in %s", stableCount, len(churnVersions), time.Since(start).Round(time.Millisecond))
	}()
	defer func() { <-evalsDone }()

	// --- the webhook ---------------------------------------------------------------------
	// GOGC=100 instead of serve's 400 (internal/gctune): the heap check below compares
	// heap floors read from outside the process (see heapVerdict), which at GOGC=400
	// swing between 1x and 5x the live heap and need far longer quiet periods to
	// settle. Everything else this scenario checks holds at either setting; the other
	// e2e tests run serve's default.
	wh := StartWebhook(t, WebhookOptions{Namespace: ns, Args: append(flags, "--service-account-lookup-grace-period=2s"),
		Env: append(os.Environ(), "GOGC=100")})
	cluster.RegisterWebhook(t, WebhookRegistration{Port: wh.Port, NamespaceSelector: NamespaceOnly(ns)})
	cms := cluster.Client.CoreV1().ConfigMaps(ns)
	cm, err := cms.Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "site-churn", Namespace: ns, Labels: bundleLabel},
		Data:       churnBundle("a"),
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cluster.WaitForMutation(t, SimplePod(ns, "probe", "irsa"), DefaultWait, func(p *corev1.Pod) bool {
		return p.Labels[churnLabel] == "a" && WebIdentityInjected(p, "app", RoleARN(ns, "irsa"))
	})

	run := &churnRun{t: t, cfg: cfg, wh: wh, ns: ns, items: items, stableCount: stableCount, churners: churners, cm: cm,
		client: newReviewClient(t, wh.Port)}

	// --- warm-up, settle, first snapshot -----------------------------------------------
	warm := run.phase("warm-up", cfg.warmup, true, cfg.rate, 0)
	<-evalsDone
	if t.Failed() {
		t.FailNow()
	}
	run.expectationsReady(warm)
	before := run.settledSnapshot("settled after the warm-up")
	// --- the measured run, settle, second snapshot ------------------------------------
	measured := run.phase("run", cfg.duration, true, cfg.rate, 0)
	after := run.settledSnapshot("settled after the run")

	// --- report and verdicts -----------------------------------------------------------
	gens := after.metrics["pod_identity_webhook_bundle_generation"] - measured.genStart
	goroutinesBefore, goroutinesAfter := before.metrics["go_goroutines"], after.metrics["go_goroutines"]
	heapOK, heapText := heapVerdict(before, after)
	st, ch := reviewclient.Summarize(measured.latStable), reviewclient.Summarize(measured.latChurn)
	cpuPer := func(p *phaseResult) float64 {
		if p.answered == 0 {
			return 0
		}
		return float64(p.serverCPU/time.Duration(p.answered)) / float64(time.Microsecond)
	}
	t.Logf("REPORT load under churn: %.0f req/s open loop for %s over %s: %d sent, %d answered (%d mutated), %d errors, %d wrong patches of %d checked (version a %d, b %d); "+
		"%.1f req/s; latency ms stable SAs p50 %.2f p99 %.2f p999 %.2f max %.2f, churned SAs p50 %.2f p99 %.2f p999 %.2f max %.2f; "+
		"server CPU %.0f µs/request (%.2f cores; %.0f µs/request at %d req/s without churn); goroutines %.0f → %.0f; %s; generations activated %.0f (%d ConfigMap writes); "+
		"ServiceAccounts created %d, deleted %d; in flight max %d, limit hits %d, scheduler max lag %.1f ms",
		cfg.rate, cfg.duration, strings.Join(slices.Sorted(maps.Keys(measured.protocols)), "+"), measured.sent, measured.answered, measured.mutated,
		measured.errorCount(), measured.wrong, measured.checked, measured.versions["a"], measured.versions["b"],
		float64(measured.answered)/cfg.duration.Seconds(), st.P50, st.P99, st.P999, st.Max, ch.P50, ch.P99, ch.P999, ch.Max,
		cpuPer(measured), measured.serverCPU.Seconds()/measured.wall.Seconds(), cpuPer(after.probe), probeRate,
		goroutinesBefore, goroutinesAfter, heapText, gens, measured.writes, measured.creates, measured.deletes,
		measured.maxInflight, measured.limitHits, reviewclient.Ms(measured.maxLag))

	for _, p := range []*phaseResult{before.probe, after.probe} {
		t.Logf("%s: heap in use samples (MiB) %s; heap goal samples %s", p.name, mibs(p.heapSamples), mibs(p.goalSamples))
	}
	for _, p := range []*phaseResult{warm, before.probe, measured, after.probe} {
		if n := p.errorCount(); n > 0 {
			t.Errorf("%s: %d errors: %v; e.g. %v", p.name, n, p.errors, p.samples)
		}
		if p.wrong > 0 {
			t.Errorf("%s: %d wrong patches; e.g. %s", p.name, p.wrong, p.wrongSample)
		}
		if p.churnWrong > 0 {
			t.Errorf("%s: %d answers for churned ServiceAccounts are wrong; e.g. %s", p.name, p.churnWrong, p.churnSample)
		}
		if p.apiErrors > 0 {
			t.Errorf("%s: %d API errors while churning; e.g. %s", p.name, p.apiErrors, p.apiSample)
		}
	}
	if measured.answered != measured.sent {
		t.Errorf("%d requests sent, %d answered", measured.sent, measured.answered)
	}
	if measured.checked == 0 || measured.versions["a"] == 0 || measured.versions["b"] == 0 {
		t.Errorf("the checked answers should show both bundle versions: %d checked, versions %v", measured.checked, measured.versions)
	}
	if minGens := cfg.duration.Seconds() / 4; gens < minGens {
		t.Errorf("%.0f generations activated during the run, want at least %.0f (one ConfigMap write per second)", gens, minGens)
	}
	if goroutinesAfter > goroutinesBefore+10 {
		t.Errorf("goroutines grew from %.0f to %.0f over the run", goroutinesBefore, goroutinesAfter)
	}
	if !heapOK {
		t.Errorf("heap grew over the run: %s", heapText)
	}
	if t.Failed() {
		t.Logf("webhook log, last lines:\n%s", wh.Tail(40))
	}
}

// churnLabel is the label the churned bundle sets, to its version.
const churnLabel = "churn.example.com/version"

var churnVersions = []string{"a", "b"}

// churnBundle is the site bundle in the given version: one policy that labels every
// pod with the version, and a test (run before every activation).
func churnBundle(version string) map[string]string {
	return map[string]string{
		"manifest.yaml": fmt.Sprintf(`apiVersion: pod-identity-webhook.io/v1alpha1
kind: Bundle
name: churn
description: Labels every pod with the bundle version; rewritten every second by TestLoadUnderChurn.
params:
  version: %q
policies:
  - name: version-label
    match:
      - name: has-containers
        expression: size(object.spec.containers) > 0
    rule: data.churn.version.mutations
`, version),
		"version.rego": `package churn.version

mutations contains {"op": "set-label", "key": "churn.example.com/version", "value": input.params.version}
`,
		"version_test.rego": `package churn.version_test

import data.churn.version

test_label_is_the_version if {
	{"op": "set-label", "key": "churn.example.com/version", "value": "x"} in version.mutations with input as {"params": {"version": "x"}}
}
`,
	}
}

type churnConfig struct {
	rate             float64
	duration, warmup time.Duration
}

func churnConfigFromEnv(t *testing.T) churnConfig {
	c := churnConfig{rate: 500, duration: 60 * time.Second, warmup: 5 * time.Second}
	if v := os.Getenv("E2E_CHURN_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("E2E_CHURN_RATE=%q: a positive number of requests per second", v)
		}
		c.rate = r
	}
	for env, d := range map[string]*time.Duration{"E2E_CHURN_DURATION": &c.duration, "E2E_CHURN_WARMUP": &c.warmup} {
		if v := os.Getenv(env); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				t.Fatalf("%s=%q: a positive duration", env, v)
			}
			*d = x
		}
	}
	return c
}

// --- pods and reviews -----------------------------------------------------------------

// churnTemplate builds a pod of ServiceAccount sa. Every pod carries the annotation
// varyAnnotation, whose value is replaced per request for the requests meant to miss
// the memo.
type churnTemplate struct {
	name string
	pod  func(ns, name, sa string) *corev1.Pod
}

const (
	varyAnnotation   = "load.example.com/request"
	varyPlaceholder  = "vary-000000000000000"
	uidPlaceholder   = "00000000-load-0000-0000-000000000000"
	skipContainersAn = "eks.amazonaws.com/skip-containers"
)

var churnTemplates = []churnTemplate{
	{"web", func(ns, name, sa string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"},
				Annotations: map[string]string{varyAnnotation: varyPlaceholder}},
			Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{
				{Name: "app", Image: defaultTestImage, Env: []corev1.EnvVar{{Name: "EXISTING", Value: "kept"}}},
			}},
		}
	}},
	{"worker", func(ns, name, sa string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "worker", "tier": "batch"},
				Annotations: map[string]string{varyAnnotation: varyPlaceholder, skipContainersAn: "sidecar",
					"eks.amazonaws.com/token-expiration": "3600"}},
			Spec: corev1.PodSpec{
				ServiceAccountName: sa,
				InitContainers:     []corev1.Container{{Name: "migrate", Image: defaultTestImage}},
				Containers: []corev1.Container{
					{Name: "app", Image: defaultTestImage, VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}},
					{Name: "sidecar", Image: defaultTestImage},
				},
				Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			},
		}
	}},
	{"windows", func(ns, name, sa string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "windows"},
				Annotations: map[string]string{varyAnnotation: varyPlaceholder}},
			Spec: corev1.PodSpec{
				ServiceAccountName: sa,
				NodeSelector:       map[string]string{"kubernetes.io/os": "windows"},
				Containers: []corev1.Container{
					{Name: "app", Image: defaultTestImage, Env: []corev1.EnvVar{{Name: "AWS_REGION", Value: "eu-west-1"}}},
					{Name: "helper", Image: defaultTestImage},
				},
			},
		}
	}},
}

// loadItem is one kind of request of the mix: a template for one ServiceAccount.
type loadItem struct {
	name   string
	sa     string
	stable bool
	role   string // churned: the role its ServiceAccount has while it exists
	body   []byte // the AdmissionReview, with uidPlaceholder and varyPlaceholder
	// expected is the decoded patch per bundle version (stable items).
	expected map[string]any
}

// newLoadItem takes the pod as the API server would send it to the webhook: created
// with dryRun before the webhook is registered, so defaulted and with the
// kube-api-access volume of the ServiceAccount admission plugin.
func newLoadItem(t *testing.T, ns string, tpl churnTemplate, sa string, stable bool, role string) *loadItem {
	t.Helper()
	name := tpl.name + "-" + sa
	received, err := cluster.DryRunPod(t.Context(), tpl.pod(ns, name, sa))
	if err != nil {
		t.Fatalf("dry-run create of %s: %v", name, err)
	}
	pod := asSent(received)
	raw := podJSON(t, pod)
	no := false
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             types.UID(uidPlaceholder),
			Kind:            metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:        metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			RequestKind:     &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			RequestResource: &metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:            name,
			Namespace:       ns,
			Operation:       admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}},
			Object:  runtime.RawExtension{Raw: raw},
			DryRun:  &no,
			Options: runtime.RawExtension{Raw: []byte(`{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}`)},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(body, []byte(uidPlaceholder)) != 1 || bytes.Count(body, []byte(varyPlaceholder)) != 1 {
		t.Fatalf("review of %s: the placeholders should appear once each", name)
	}
	return &loadItem{name: name, sa: sa, stable: stable, role: role, body: body}
}

// request is the body of request k: its UID, and when vary, a unique annotation value
// of the same length.
func (it *loadItem) request(k int, vary bool) ([]byte, string) {
	uid := fmt.Sprintf("%08d-load-0000-0000-%012d", k%100000000, k)
	b := bytes.Replace(it.body, []byte(uidPlaceholder), []byte(uid), 1)
	if vary {
		b = bytes.Replace(b, []byte(varyPlaceholder), []byte(fmt.Sprintf("vary-%015d", k)), 1)
	}
	return b, uid
}

// expectPatches runs `pod-identity-webhook eval -o patch` for every item and bundle
// version, two at a time, with the webhook's flags, the item's review (placeholders
// included: the patch does not depend on them) and the ServiceAccount as the API server
// has it. It may run on its own goroutine: it reports with t.Errorf only.
func expectPatches(t *testing.T, ns string, items []*loadItem, dir string, bundleDirs map[string]string, flags []string) {
	bin := BuildBinary(t, WebhookPackage) // built already: no failure here
	type job struct {
		it      *loadItem
		version string
		args    []string
	}
	var jobs []job
	saFiles := map[string]string{}
	for _, it := range items {
		if saFiles[it.sa] == "" {
			sa, err := cluster.Client.CoreV1().ServiceAccounts(ns).Get(t.Context(), it.sa, metav1.GetOptions{})
			if err != nil {
				t.Errorf("reading ServiceAccount %s: %v", it.sa, err)
				return
			}
			sa.APIVersion, sa.Kind = "v1", "ServiceAccount"
			b, err := yaml.Marshal(sa)
			if err != nil {
				t.Errorf("%v", err)
				return
			}
			saFiles[it.sa] = filepath.Join(dir, "sa-"+it.sa+".yaml")
			if err := os.WriteFile(saFiles[it.sa], b, 0o644); err != nil {
				t.Errorf("%v", err)
				return
			}
		}
		reviewFile := filepath.Join(dir, "review-"+it.name+".json")
		if err := os.WriteFile(reviewFile, it.body, 0o644); err != nil {
			t.Errorf("%v", err)
			return
		}
		it.expected = map[string]any{}
		for _, v := range churnVersions {
			args := append([]string{"eval", "--pod", reviewFile, "--service-account", saFiles[it.sa], "--bundle", bundleDirs[v], "-o", "patch"}, flags...)
			jobs = append(jobs, job{it, v, args})
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for _, j := range jobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, j.args...)
			cmd.Dir = dir
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Errorf("%s %s: %v\n%s", bin, strings.Join(j.args, " "), err, stderr.String())
				return
			}
			var patch any
			if err := json.Unmarshal(stdout.Bytes(), &patch); err != nil {
				t.Errorf("eval -o patch for %s printed %q: %v", j.it.name, stdout.String(), err)
				return
			}
			mu.Lock()
			j.it.expected[j.version] = normalizePatch(patch)
			mu.Unlock()
		})
	}
	wg.Wait()
}

// normalizePatch makes "no patch" one value: null and [] both mean none.
func normalizePatch(p any) any {
	if a, ok := p.([]any); ok && len(a) == 0 {
		return nil
	}
	return p
}

// --- the run ----------------------------------------------------------------------------

// churnSA is one churned ServiceAccount; exists is only touched by the churner.
type churnSA struct {
	name, role string
	exists     bool
}

func (c churnSA) annotations() map[string]string {
	if c.role == "" {
		return nil
	}
	return map[string]string{RoleAnnotation: c.role}
}

type churnRun struct {
	t           *testing.T
	cfg         churnConfig
	wh          *Webhook
	ns          string
	items       []*loadItem
	stableCount int
	churners    []churnSA
	cm          *corev1.ConfigMap
	client      *reviewClient
	seq         int // request numbers run on across phases
	// ready is set once eval's patches are in the items; answers recorded before
	// are checked then.
	ready atomic.Bool
}

// phaseResult is what one phase measured.
type phaseResult struct {
	name      string
	mu        sync.Mutex
	sent      int
	answered  int
	mutated   int
	protocols map[string]int
	errors    map[string]int
	samples   map[string]string
	// latStable and latChurn are the latencies of answered requests, from their
	// scheduled send time.
	latStable, latChurn []time.Duration
	checked, wrong      int
	wrongSample         string
	versions            map[string]int
	churnWrong          int
	churnSample         string

	writes, creates, deletes int
	apiErrors                int
	apiSample                string

	serverCPU, wall        time.Duration
	genStart               float64
	limitHits, maxInflight int
	maxLag                 time.Duration
	// heap samples: go_memstats_heap_inuse_bytes and go_memstats_next_gc_bytes.
	heapSamples, goalSamples []float64
	// deferred are the stable answers received before eval's patches were ready.
	deferred []deferredAnswer
}

type deferredAnswer struct {
	item  *loadItem
	patch any
	raw   []byte
}

func (p *phaseResult) errorCount() int {
	n := 0
	for _, c := range p.errors {
		n += c
	}
	return n
}

// phase sends load at rate for d; with churn, the ConfigMap rewrites and the
// ServiceAccount churn run meanwhile and one request in ten is for a churned
// ServiceAccount, without, every request is for a stable one. With sample > 0 the heap
// is sampled every 200 ms over the last sample of the phase.
func (r *churnRun) phase(name string, d time.Duration, churn bool, rate float64, sample time.Duration) *phaseResult {
	t := r.t
	p := &phaseResult{name: name, protocols: map[string]int{}, errors: map[string]int{}, samples: map[string]string{}, versions: map[string]int{}}
	p.genStart = r.wh.Metrics(t)["pod_identity_webhook_bundle_generation"]
	ctx, cancel := context.WithCancel(t.Context())
	var bg sync.WaitGroup
	if churn {
		bg.Go(func() { r.rewriteBundle(ctx, p) })
		bg.Go(func() { r.churnServiceAccounts(ctx, p) })
	}

	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(d)
	if sample > 0 {
		bg.Go(func() { r.sampleHeap(ctx, p, end.Add(-sample), end) })
	}
	cpu0, err := processCPU(r.wh.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	first := r.seq
	rng := rand.New(rand.NewPCG(uint64(first), 42))
	// The choices are made up front so the scheduler does nothing but send.
	n := int(d.Seconds()*rate) + 1
	type choice struct {
		item *loadItem
		vary bool
	}
	choices := make([]choice, n)
	for i := range choices {
		var it *loadItem
		if churn && rng.IntN(10) == 0 {
			it = r.items[r.stableCount+rng.IntN(len(r.items)-r.stableCount)]
		} else {
			it = r.items[rng.IntN(r.stableCount)]
		}
		choices[i] = choice{it, rng.IntN(4) == 0}
	}
	var inflight, maxInflight int
	var inflightMu sync.Mutex
	p.limitHits, p.maxLag = openLoop(start, end, rate, 1000, func(k int, sched time.Time) {
		inflightMu.Lock()
		inflight++
		maxInflight = max(maxInflight, inflight)
		inflightMu.Unlock()
		defer func() {
			inflightMu.Lock()
			inflight--
			inflightMu.Unlock()
		}()
		c := choices[min(k, len(choices)-1)]
		body, uid := c.item.request(first+k, c.vary)
		a := r.client.post(t.Context(), body, uid)
		r.record(p, c.item, a, time.Since(sched))
	})
	p.wall = time.Since(start)
	cpu1, err := processCPU(r.wh.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	p.serverCPU = cpu1 - cpu0
	p.maxInflight = maxInflight
	r.seq = first + n
	cancel()
	bg.Wait()
	return p
}

// record classifies one answer.
func (r *churnRun) record(p *phaseResult, it *loadItem, a reviewclient.Answer, latency time.Duration) {
	var patch any
	kind, detail := a.Kind, a.Detail
	if kind == "" && !a.Allowed {
		kind, detail = "denied", a.Message
	}
	if kind == "" && len(a.Patch) > 0 {
		if err := json.Unmarshal(a.Patch, &patch); err != nil {
			kind, detail = "bad-patch", err.Error()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent++
	if a.Proto != "" {
		p.protocols[a.Proto]++
	}
	if kind != "" {
		p.errors[kind]++
		if _, ok := p.samples[kind]; !ok {
			p.samples[kind] = fmt.Sprintf("%s: %.300s", it.name, detail)
		}
		return
	}
	p.answered++
	if patch != nil {
		p.mutated++
	}
	patch = normalizePatch(patch)
	if it.stable {
		p.latStable = append(p.latStable, latency)
		if !r.ready.Load() {
			p.deferred = append(p.deferred, deferredAnswer{it, patch, a.Patch})
			return
		}
		p.checkStable(it, patch, a.Patch)
		return
	}
	p.latChurn = append(p.latChurn, latency)
	if why := checkChurnPatch(patch, it.role); why != "" {
		p.churnWrong++
		if p.churnSample == "" {
			p.churnSample = fmt.Sprintf("%s: %s: %s", it.name, why, a.Patch)
		}
	}
}

// checkStable compares a stable item's patch with eval's for either bundle version.
// p.mu is held.
func (p *phaseResult) checkStable(it *loadItem, patch any, raw []byte) {
	p.checked++
	for _, v := range churnVersions {
		if reflect.DeepEqual(patch, it.expected[v]) {
			p.versions[v]++
			return
		}
	}
	p.wrong++
	if p.wrongSample == "" {
		want, _ := json.Marshal(it.expected)
		p.wrongSample = fmt.Sprintf("%s: got %s, want one of %s", it.name, raw, want)
	}
}

// expectationsReady marks eval's patches ready and checks the answers p received
// before.
func (r *churnRun) expectationsReady(p *phaseResult) {
	r.ready.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.deferred {
		p.checkStable(d.item, d.patch, d.raw)
	}
	p.deferred = nil
}

// checkChurnPatch checks an answer for a churned ServiceAccount, which may or may not
// exist at that moment: the version label must be set to a or b, and any role
// injected must be the ServiceAccount's own.
func checkChurnPatch(patch any, role string) string {
	ops, _ := patch.([]any)
	label := ""
	for _, op := range ops {
		m, _ := op.(map[string]any)
		if m["path"] == "/metadata/labels/churn.example.com~1version" {
			label, _ = m["value"].(string)
		}
	}
	if label != "a" && label != "b" {
		return fmt.Sprintf("version label %q", label)
	}
	for _, got := range envValues(patch, "AWS_ROLE_ARN") {
		if role == "" || got != role {
			return fmt.Sprintf("AWS_ROLE_ARN %q injected, the ServiceAccount's role is %q", got, role)
		}
	}
	return ""
}

// envValues finds the values of every env entry named name anywhere in v.
func envValues(v any, name string) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		if x["name"] == name {
			if s, ok := x["value"].(string); ok {
				out = append(out, s)
			}
		}
		for _, e := range x {
			out = append(out, envValues(e, name)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, envValues(e, name)...)
		}
	}
	return out
}

// rewriteBundle rewrites the site bundle ConfigMap every second, alternating versions.
func (r *churnRun) rewriteBundle(ctx context.Context, p *phaseResult) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cm := r.cm.DeepCopy()
		next := "a"
		if strings.Contains(cm.Data["manifest.yaml"], `version: "a"`) {
			next = "b"
		}
		cm.Data = churnBundle(next)
		updated, err := cluster.Client.CoreV1().ConfigMaps(r.ns).Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.apiError(p, fmt.Errorf("updating ConfigMap %s: %w", cm.Name, err))
			if apierrors.IsConflict(err) {
				if fresh, gerr := cluster.Client.CoreV1().ConfigMaps(r.ns).Get(ctx, cm.Name, metav1.GetOptions{}); gerr == nil {
					r.cm = fresh
				}
			}
			continue
		}
		r.cm = updated
		p.mu.Lock()
		p.writes++
		p.mu.Unlock()
	}
}

// churnServiceAccounts deletes or creates one churned ServiceAccount every 100 ms, in
// turn, so each exists for 800 ms, then not for 800 ms.
func (r *churnRun) churnServiceAccounts(ctx context.Context, p *phaseResult) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sas := cluster.Client.CoreV1().ServiceAccounts(r.ns)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c := &r.churners[i%len(r.churners)]
		var err error
		if c.exists {
			err = sas.Delete(ctx, c.name, metav1.DeleteOptions{})
			if err == nil || apierrors.IsNotFound(err) {
				c.exists = false
				p.mu.Lock()
				p.deletes++
				p.mu.Unlock()
				continue
			}
		} else {
			_, err = sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: c.name, Annotations: c.annotations()}}, metav1.CreateOptions{})
			if err == nil || apierrors.IsAlreadyExists(err) {
				c.exists = true
				p.mu.Lock()
				p.creates++
				p.mu.Unlock()
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.apiError(p, fmt.Errorf("ServiceAccount %s: %w", c.name, err))
	}
}

func (r *churnRun) apiError(p *phaseResult, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.apiErrors++
	if p.apiSample == "" {
		p.apiSample = err.Error()
	}
}

// sampleHeap reads go_memstats_heap_inuse_bytes and go_memstats_next_gc_bytes every
// 200 ms between from and to.
func (r *churnRun) sampleHeap(ctx context.Context, p *phaseResult, from, to time.Time) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Until(from)):
	}
	for time.Now().Before(to) {
		m, err := readMetrics(ctx, r.wh.MetricsURL)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.heapSamples = append(p.heapSamples, m["go_memstats_heap_inuse_bytes"])
		p.goalSamples = append(p.goalSamples, m["go_memstats_next_gc_bytes"])
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// snapshot is the webhook's state after a settle period.
type snapshot struct {
	// probe is the light load of the settle period, with its heap samples.
	probe   *phaseResult
	metrics map[string]float64
}

// Settling: a quiet period, then a light probe load whose heap samples are compared.
const (
	settleQuiet = 3 * time.Second // > the 2 s grace period; the last ConfigMap write is activated
	probeLength = 3 * time.Second
	probeRate   = 200
)

// settledSnapshot lets the webhook settle after a phase: a quiet period (the requests
// waiting for a churned ServiceAccount end within the 2 s grace period, the last
// ConfigMap write is debounced and activated), then a probe of 3 s of light, steady
// load (200 req/s, stable ServiceAccounts only, no churn) during which the heap is
// sampled every 200 ms, then the client's connections are closed (so their server
// goroutines go too) and the metrics are read.
func (r *churnRun) settledSnapshot(name string) snapshot {
	time.Sleep(settleQuiet)
	probe := r.phase(name, probeLength, false, probeRate, probeLength)
	r.client.tr.CloseIdleConnections()
	time.Sleep(500 * time.Millisecond)
	return snapshot{probe: probe, metrics: r.wh.Metrics(r.t)}
}

// heapVerdict compares the heap after the run with the heap after the warm-up.
//
// go_memstats_heap_inuse_bytes read once is the live heap plus whatever garbage the
// collector has not reclaimed yet: anywhere between about 1× and 2× the live heap
// (GOGC=100), depending on where in its cycle the collector was when it was read; in
// a quiet process it stays wherever the last request left it. During the run a new
// generation is compiled every second, and a compile in flight holds tens of MiB for a
// moment, so samples under churn swing widely too. Nothing is forced inside the
// process, so the verdict compares like with like: after each phase and a quiet
// period, the same light, steady load without churn runs for 3 s (the collector runs
// several times), the heap is sampled every 200 ms, and the lowest samples (the heap
// right after a collection, close to what is live) are compared. The run's must be
// within +25% (+1 MiB, so a small heap's noise does not count) of the warm-up's: a
// leak per generation (a compiled program holds megabytes; the run activates dozens)
// or per request (30,000) is far above that. The single readings at the end of each
// settle period, the heap goal (go_memstats_next_gc_bytes) and RSS are reported
// beside it.
func heapVerdict(before, after snapshot) (bool, string) {
	floor := func(s []float64) float64 {
		if len(s) == 0 {
			return 0
		}
		m := s[0]
		for _, x := range s {
			m = min(m, x)
		}
		return m
	}
	b, a := floor(before.probe.heapSamples), floor(after.probe.heapSamples)
	const mib = 1 << 20
	ok := b > 0 && a > 0 && a <= b*1.25+mib
	growth := 0.0
	if b > 0 {
		growth = (a/b - 1) * 100
	}
	text := fmt.Sprintf("heap in use %.1f → %.1f MiB (%+.0f%%; floor of %d and %d samples under the settle probe), last reading %.1f → %.1f MiB, heap goal %.1f → %.1f MiB, RSS %.1f → %.1f MiB",
		b/mib, a/mib, growth, len(before.probe.heapSamples), len(after.probe.heapSamples),
		before.metrics["go_memstats_heap_inuse_bytes"]/mib, after.metrics["go_memstats_heap_inuse_bytes"]/mib,
		before.metrics["go_memstats_next_gc_bytes"]/mib, after.metrics["go_memstats_next_gc_bytes"]/mib,
		before.metrics["process_resident_memory_bytes"]/mib, after.metrics["process_resident_memory_bytes"]/mib)
	return ok, text
}

// readMetrics is Webhook.Metrics without a test to fail.
func readMetrics(ctx context.Context, metricsURL string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := scrape(ctx, metricsURL)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, errors.New("no metrics")
	}
	return m, nil
}

func mibs(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x/(1<<20), 'f', 1, 64)
	}
	return strings.Join(parts, " ")
}
