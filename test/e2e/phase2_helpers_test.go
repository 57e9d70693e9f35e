package e2e

// Helpers of the phase-2 scenarios: metrics of a running webhook, the eval command,
// Events, a stub admission webhook, an API server proxy that delays ServiceAccount
// watch events, and a kubelet-style atomically updated directory.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// CreateBareNamespace creates a namespace named after the test without a "default"
// ServiceAccount (CreateNamespace adds one), and returns its name.
func (c *Cluster) CreateBareNamespace(t testing.TB) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: dnsLabel(t.Name(), 40) + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// StartWebhookAndRegister starts the webhook with o, registers it for namespace ns only
// (r's Port and NamespaceSelector are filled in) and waits until a dry-run of probe is
// mutated as mutated says.
func StartWebhookAndRegister(t testing.TB, o WebhookOptions, r WebhookRegistration, probe *corev1.Pod, mutated func(*corev1.Pod) bool) *Webhook {
	t.Helper()
	wh := StartWebhook(t, o)
	r.Port = wh.Port
	if r.NamespaceSelector == nil {
		r.NamespaceSelector = NamespaceOnly(probe.Namespace)
	}
	cluster.RegisterWebhook(t, r)
	cluster.WaitForMutation(t, probe, DefaultWait, mutated)
	return wh
}

// --- pods -------------------------------------------------------------------------

// EnvValue returns the value of env var name in container c (valueFrom entries count as
// present with an empty value).
func EnvValue(c *corev1.Container, name string) (string, bool) {
	if c == nil {
		return "", false
	}
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// MustContainer returns the container (or init container) name of pod.
func MustContainer(t testing.TB, pod *corev1.Pod, name string) *corev1.Container {
	t.Helper()
	c := findContainer(pod, name)
	if c == nil {
		t.Fatalf("pod %s/%s has no container %q", pod.Namespace, pod.Name, name)
	}
	return c
}

// PodVolume returns the pod's volume name, or nil.
func PodVolume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

// countVolumes counts the pod's volumes named name.
func countVolumes(pod *corev1.Pod, name string) int {
	n := 0
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			n++
		}
	}
	return n
}

// countEnv counts the entries named name in c's env.
func countEnv(c *corev1.Container, name string) int {
	n := 0
	for _, e := range c.Env {
		if e.Name == name {
			n++
		}
	}
	return n
}

// hasMount says whether c mounts volume at path.
func hasMount(c *corev1.Container, volume, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume && m.MountPath == path {
			return true
		}
	}
	return false
}

// WebIdentityInjected says whether container ctr of pod got IRSA for role: the env,
// the mount and the pod's token volume.
func WebIdentityInjected(pod *corev1.Pod, ctr, role string) bool {
	c := findContainer(pod, ctr)
	got, _ := EnvValue(c, EnvRoleARN)
	tf, _ := EnvValue(c, EnvWebIdentityToken)
	return c != nil && got == role && tf == IRSATokenFile && hasMount(c, IRSAVolume, IRSAMountPath) && PodVolume(pod, IRSAVolume) != nil
}

// NoIdentity says whether no container of pod got any AWS identity env, mount or volume.
func NoIdentity(pod *corev1.Pod) bool {
	if PodVolume(pod, IRSAVolume) != nil || PodVolume(pod, CCVolume) != nil {
		return false
	}
	if _, ok := pod.Labels[PodIdentityLabel]; ok {
		return false
	}
	all := append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
	for i := range all {
		for _, e := range all[i].Env {
			if strings.HasPrefix(e.Name, "AWS_") {
				return false
			}
		}
		for _, m := range all[i].VolumeMounts {
			if m.Name == IRSAVolume || m.Name == CCVolume {
				return false
			}
		}
	}
	return true
}

// PodIdentityLabel is the label the container-credentials mode sets to "enabled".
const PodIdentityLabel = "eks.amazonaws.com/pod-identity"

// podJSON is pod as JSON with its apiVersion and kind (typed clients leave them empty).
func podJSON(t testing.TB, pod *corev1.Pod) []byte {
	t.Helper()
	p := pod.DeepCopy()
	p.APIVersion, p.Kind = "v1", "Pod"
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// asSent strips what the API server sets only after mutating admission (uid,
// creationTimestamp, resourceVersion) and the managed fields, so a dry-run result can
// be given to eval or created again.
func asSent(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	p.UID, p.ResourceVersion, p.CreationTimestamp, p.ManagedFields, p.Generation = "", "", metav1.Time{}, nil, 0
	p.Status = corev1.PodStatus{}
	return p
}

// --- metrics ----------------------------------------------------------------------

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
var metricLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// Metric returns the sum of the samples of name (a counter or gauge) on the webhook's
// /metrics whose labels include labels; 0 when there is none.
func (w *Webhook) Metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.MetricsURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", w.MetricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %s", w.MetricsURL, resp.Status)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name {
			continue
		}
		got := map[string]string{}
		for _, l := range metricLabel.FindAllStringSubmatch(m[2], -1) {
			got[l[1]] = l[2]
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", sc.Text(), err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s/metrics: %v", w.MetricsURL, err)
	}
	return sum
}

// --- eval -------------------------------------------------------------------------

// RunEval runs `pod-identity-webhook eval args...` and returns its stdout; a non-zero
// exit fails the test with stderr.
func RunEval(t testing.TB, args ...string) []byte {
	t.Helper()
	bin := BuildBinary(t, WebhookPackage)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"eval"}, args...)...)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pod-identity-webhook eval %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeYAML writes obj as YAML to dir/name and returns the path.
func writeYAML(t testing.TB, dir, name string, obj any) string {
	t.Helper()
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, b)
}

// --- Events -----------------------------------------------------------------------

// WaitForEvent waits for an Event of the given type and reason on the object named
// name in namespace ns, and returns it.
func (c *Cluster) WaitForEvent(t testing.TB, ns, kind, name, eventType, reason string, timeout time.Duration) corev1.Event {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name, "type": eventType, "reason": reason}.AsSelector().String()
	var ev corev1.Event
	Eventually(t, timeout, fmt.Sprintf("a %s Event %s on %s %s/%s", eventType, reason, kind, ns, name), func(ctx context.Context) (bool, error) {
		list, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, err
		}
		if len(list.Items) == 0 {
			return false, nil
		}
		ev = list.Items[len(list.Items)-1]
		return true, nil
	})
	return ev
}

// Events lists the Events on the object named name in ns.
func (c *Cluster) Events(t testing.TB, ns, name string) []corev1.Event {
	t.Helper()
	list, err := c.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
	})
	if err != nil {
		t.Fatalf("listing Events on %s/%s: %v", ns, name, err)
	}
	return list.Items
}

// --- a stub admission webhook -----------------------------------------------------

// PatchOp is one JSON Patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// StubWebhook is an admission webhook in the test process (admission.k8s.io/v1 only),
// served over TLS with the harness webhook certificate.
type StubWebhook struct {
	Port int
}

// StartStubWebhook serves /mutate with mutate, which returns the JSON Patch for a pod
// (nil: allowed unchanged). It stops when the test ends.
func StartStubWebhook(t testing.TB, mutate func(req *admissionv1.AdmissionRequest, pod *corev1.Pod) []PatchOp) *StubWebhook {
	t.Helper()
	s := &StubWebhook{}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, fmt.Sprintf("bad review: %v", err), http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
			http.Error(w, fmt.Sprintf("bad pod: %v", err), http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		if ops := mutate(review.Request, &pod); len(ops) > 0 {
			patch, err := json.Marshal(ops)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
		}
		review.Request, review.Response = nil, resp
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(l, cluster.PKI.WebhookCertFile, cluster.PKI.WebhookKeyFile) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// --- an API server proxy that delays ServiceAccount watch events -------------------

// APIProxy is a reverse proxy to the test API server for one webhook process: it
// authenticates upstream as the admin, and it can hold back the events of
// ServiceAccount watches, so the webhook's informer cache lags behind the API server
// the way it does on a busy cluster.
type APIProxy struct {
	URL        string
	Kubeconfig string // a kubeconfig for the proxy (no credentials needed)
	watches    atomic.Int32
}

// ServiceAccountWatches is how many ServiceAccount watches the proxy has seen.
func (p *APIProxy) ServiceAccountWatches() int { return int(p.watches.Load()) }

// StartAPIProxy starts the proxy; every byte of a cluster-wide ServiceAccount watch
// reaches the client lag after the API server sent it, except the initial events of a
// watch-list (sendInitialEvents=true, the informer's initial "list" on current
// client-go), so the webhook starts in time with a complete cache and only the changes
// after it lag. It stops when the test ends.
func StartAPIProxy(t testing.TB, lag time.Duration) *APIProxy {
	t.Helper()
	target, err := url.Parse(cluster.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	p := &APIProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Del("Authorization")
			// Uncompressed streams (the transport still compresses on the wire and
			// decompresses), so the watch-list's end marker can be found.
			pr.Out.Header.Del("Accept-Encoding")
		},
		Transport:     transport,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			r := resp.Request
			if lag > 0 && r.URL.Path == "/api/v1/serviceaccounts" && r.URL.Query().Get("watch") == "true" {
				p.watches.Add(1)
				resp.Body = newLaggedBody(resp.Body, lag, r.URL.Query().Get("sendInitialEvents") == "true")
			}
			return nil
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(l, cluster.PKI.WebhookCertFile, cluster.PKI.WebhookKeyFile) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.URL = "https://" + l.Addr().String()

	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["proxy"] = &clientcmdapi.Cluster{Server: p.URL, CertificateAuthorityData: cluster.PKI.WebhookCA.PEM}
	cfg.AuthInfos["anonymous"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "anonymous"}
	cfg.CurrentContext = "proxy"
	p.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	return p
}

type lagChunk struct {
	data []byte
	at   time.Time
	err  error
}

// initialEventsEnd is the annotation of the bookmark that ends a watch-list's initial
// events (a raw string in both JSON and protobuf streams).
var initialEventsEnd = []byte("k8s.io/initial-events-end")

// laggedBody hands out what body produced, each chunk lag after it was read; with
// initial set, chunks up to the end of the initial events are handed out at once.
type laggedBody struct {
	body   io.ReadCloser
	ch     chan lagChunk
	cur    []byte
	closed chan struct{}
	once   sync.Once
}

func newLaggedBody(body io.ReadCloser, lag time.Duration, initial bool) *laggedBody {
	b := &laggedBody{body: body, ch: make(chan lagChunk, 4096), closed: make(chan struct{})}
	go func() {
		var seen []byte // the initial events so far, to find the end marker across chunks
		for {
			buf := make([]byte, 32<<10)
			n, err := body.Read(buf)
			at := time.Now().Add(lag)
			if initial {
				at = time.Now()
				seen = append(seen, buf[:n]...)
				if bytes.Contains(seen, initialEventsEnd) {
					initial, seen = false, nil
				} else if len(seen) > len(initialEventsEnd) {
					seen = seen[len(seen)-len(initialEventsEnd):]
				}
			}
			if n > 0 {
				select {
				case b.ch <- lagChunk{data: buf[:n], at: at}:
				case <-b.closed:
					return
				}
			}
			if err != nil {
				select {
				case b.ch <- lagChunk{err: err, at: at}:
				case <-b.closed:
				}
				return
			}
		}
	}()
	return b
}

func (b *laggedBody) Read(p []byte) (int, error) {
	if len(b.cur) == 0 {
		var c lagChunk
		select {
		case c = <-b.ch:
		case <-b.closed:
			return 0, io.ErrClosedPipe
		}
		select {
		case <-time.After(time.Until(c.at)):
		case <-b.closed:
			return 0, io.ErrClosedPipe
		}
		if c.err != nil {
			return 0, c.err
		}
		b.cur = c.data
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

func (b *laggedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return b.body.Close()
}

// --- a kubelet-style atomically updated directory ----------------------------------

// AtomicDir is a directory updated the way kubelet updates ConfigMap and Secret
// volumes: the files are symlinks through ..data, itself a symlink to a timestamped
// directory, and an update writes a new directory and swaps ..data with a rename.
type AtomicDir struct {
	Dir string
	n   int
}

// NewAtomicDir creates an empty one in a temp dir.
func NewAtomicDir(t testing.TB) *AtomicDir {
	return &AtomicDir{Dir: t.TempDir()}
}

// Path is where file name appears.
func (d *AtomicDir) Path(name string) string { return filepath.Join(d.Dir, name) }

// Write replaces the directory's content with files, atomically.
func (d *AtomicDir) Write(t testing.TB, files map[string]string) {
	t.Helper()
	d.n++
	data := filepath.Join(d.Dir, "..data")
	old, _ := os.Readlink(data)
	ts := fmt.Sprintf("..%s.%d", time.Now().UTC().Format("2006_01_02_15_04_05"), d.n)
	if err := os.Mkdir(filepath.Join(d.Dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d.Dir, ts, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(d.Dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(d.Dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(d.Dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}
