package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Cluster is a real etcd and kube-apiserver on 127.0.0.1, with no controller-manager,
// scheduler or kubelet: pods are stored and stay Pending.
type Cluster struct {
	Dir            string // temp root: pki/, logs/, etcd-data/, bin/, kubeconfig
	BinDir         string // where kube-apiserver and etcd come from
	PKI            *PKI
	Host           string // https://127.0.0.1:<port>
	Issuer         string // the ServiceAccount token issuer (== Host)
	KubeconfigPath string // admin kubeconfig (system:masters), certificates embedded
	Config         *rest.Config
	Client         kubernetes.Interface

	Etcd, APIServer *Process
	ReadyIn         time.Duration // process start → /readyz 200
}

// kubeBinsDir returns $KUBEBINS_DIR, or asks test/kubebins/build.sh for the cached
// binaries (building them if this machine has never done so: 15-20 min).
func kubeBinsDir(repoRoot string) (string, error) {
	dir := os.Getenv("KUBEBINS_DIR")
	if dir == "" {
		script := filepath.Join(repoRoot, "test", "kubebins", "build.sh")
		cmd := exec.Command(script)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("KUBEBINS_DIR is not set and %s failed: %w", script, err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("KUBEBINS_DIR=%s has no executable %s (run test/kubebins/build.sh): %v", dir, b, err)
		}
	}
	return dir, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	// Hold all listeners until every port is picked, so the n ports differ.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// errPortTaken marks a start that failed because a picked port was grabbed by someone
// else in between; the caller retries with new ports.
var errPortTaken = errors.New("port taken")

// StartCluster generates the PKI, starts etcd and kube-apiserver, waits for /readyz and
// prepares the cluster for tests (default ServiceAccount, anonymous OIDC discovery).
func StartCluster(ctx context.Context, dir, binDir string) (*Cluster, error) {
	c := &Cluster{Dir: dir, BinDir: binDir}
	var err error
	if c.PKI, err = NewPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, fmt.Errorf("generating certificates: %w", err)
	}
	for attempt := 1; ; attempt++ {
		err = c.start(ctx)
		if err == nil {
			break
		}
		c.stopProcesses()
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			return nil, err
		}
	}
	if err := c.connect(); err != nil {
		c.stopProcesses()
		return nil, err
	}
	if err := c.prepare(ctx); err != nil {
		c.stopProcesses()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	clientPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	dataDir := filepath.Join(c.Dir, "etcd-data")
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	logs := filepath.Join(c.Dir, "logs")
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	c.Host = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	c.Issuer = c.Host
	p := c.PKI

	begin := time.Now()
	c.Etcd, err = startProcess(logs, "etcd", filepath.Join(c.BinDir, "etcd"), []string{
		"--name=e2e",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, StartProcessOptions{Env: []string{}})
	if err != nil {
		return err
	}
	c.APIServer, err = startProcess(logs, "kube-apiserver", filepath.Join(c.BinDir, "kube-apiserver"), []string{
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--endpoint-reconciler-type=none",
		"--tls-cert-file=" + p.APIServerCert,
		"--tls-private-key-file=" + p.APIServerKey,
		"--client-ca-file=" + p.CAFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + c.Issuer,
		"--service-account-key-file=" + p.ServiceAccountPub,
		"--service-account-signing-key-file=" + p.ServiceAccountKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--cert-dir=" + filepath.Join(c.Dir, "apiserver-certs"),
		"--profiling=false",
	}, StartProcessOptions{Env: []string{}})
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx, 90*time.Second); err != nil {
		return err
	}
	c.ReadyIn = time.Since(begin)
	return nil
}

// waitReady polls GET /readyz (anonymous, trusting the cluster CA) every 100 ms.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.PKI.ClusterCA.PEM)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		for _, proc := range []*Process{c.Etcd, c.APIServer} {
			if exited, err := proc.Exited(); exited {
				log := proc.Tail(40)
				if strings.Contains(log, "address already in use") {
					return fmt.Errorf("%s: %w", proc.Name, errPortTaken)
				}
				return fmt.Errorf("%s exited before the apiserver was ready (%v); log %s:\n%s", proc.Name, err, proc.LogPath, log)
			}
		}
		resp, err := hc.Get(c.Host + "/readyz")
		if err == nil {
			body := make([]byte, 4096)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body[:n])))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %s (last: %s); log %s:\n%s", timeout, last, c.APIServer.LogPath, c.APIServer.Tail(60))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// connect writes the admin kubeconfig and builds the clientset from it, the same file a
// webhook started with --kubeconfig uses.
func (c *Cluster) connect() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.PKI.ClusterCA.PEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.PKI.AdminCertPEM, ClientKeyData: c.PKI.AdminKeyPEM}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "e2e"
	c.KubeconfigPath = filepath.Join(c.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.KubeconfigPath); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 200, 400
	rc.UserAgent = "pod-identity-webhook-e2e"
	c.Config = rc
	c.Client, err = kubernetes.NewForConfig(rc)
	return err
}

// prepare does what the missing controllers and a real cluster's setup would: the
// default ServiceAccount of the default namespace, and OIDC discovery readable by
// anyone (as on EKS), so the local STS fetches the JWKS anonymously like AWS does.
func (c *Cluster) prepare(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := c.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating default/default ServiceAccount: %w", err)
	}
	_, err = c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-oidc-discovery-anonymous"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:unauthenticated"}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the OIDC discovery ClusterRoleBinding: %w", err)
	}
	return nil
}

// IssuerClient is an anonymous HTTP client that trusts the apiserver's certificate:
// what an OIDC consumer (AWS IAM) uses to read the discovery document and JWKS.
func (c *Cluster) IssuerClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.PKI.ClusterCA.PEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (c *Cluster) stopProcesses() {
	for _, p := range []*Process{c.APIServer, c.Etcd} {
		if p != nil {
			_ = p.Stop(15 * time.Second)
		}
	}
}
