package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/test/e2e/internal/awsfake"
)

// Names the SDK and the webhook use.
const (
	EnvRoleARN           = "AWS_ROLE_ARN"
	EnvWebIdentityToken  = "AWS_WEB_IDENTITY_TOKEN_FILE"
	EnvContainerFullURI  = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	EnvContainerAuthFile = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"

	SourceWebIdentity = "WebIdentityCredentials"      // stscreds.WebIdentityProviderName
	SourceContainer   = "CredentialsEndpointProvider" // endpointcreds.ProviderName

	// ProbeRegion is set for the probe when the container has no region env.
	ProbeRegion = "us-west-2"
)

// AWSFakes are the local AWS endpoints shared by the suite. Both trust the cluster's
// ServiceAccount issuer, read anonymously over its OIDC discovery document.
type AWSFakes struct {
	STS       *awsfake.STS                  // audience sts.amazonaws.com
	CC        *awsfake.ContainerCredentials // audience pods.eks.amazonaws.com, path /v1/credentials
	STSCAFile string                        // AWS_CA_BUNDLE for the SDK
}

// StartAWSFakes starts the local STS and container credentials endpoint.
func StartAWSFakes(c *Cluster) (*AWSFakes, error) {
	v := awsfake.NewVerifier(c.Issuer, c.IssuerClient())
	f := &AWSFakes{STS: awsfake.NewSTS(v, awsfake.DefaultSTSAudience)}
	var err error
	if f.CC, err = awsfake.NewContainerCredentials(v, awsfake.DefaultPodIdentityAudience, "/v1/credentials"); err != nil {
		f.STS.Close()
		return nil, err
	}
	f.STSCAFile = filepath.Join(c.Dir, "pki", "sts-ca.crt")
	if err := os.WriteFile(f.STSCAFile, f.STS.CAPEM(), 0o644); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close stops both endpoints.
func (f *AWSFakes) Close() {
	f.STS.Close()
	if f.CC != nil {
		f.CC.Close()
	}
}

// ServiceAccountSubject is the token subject of a ServiceAccount.
func ServiceAccountSubject(ns, sa string) string {
	return "system:serviceaccount:" + ns + ":" + sa
}

// ProbeResult is what the SDK probe printed (test/e2e/sdkprobe), plus how it was run.
type ProbeResult struct {
	OK              bool   `json:"ok"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	SessionToken    string `json:"sessionToken"`
	Source          string `json:"source"`
	CanExpire       bool   `json:"canExpire"`
	Expires         string `json:"expires"`
	Region          string `json:"region"`
	Stage           string `json:"stage"`
	Error           string `json:"error"`
	ErrorCode       string `json:"errorCode"`

	Env    []string     // the probe's whole environment
	Tokens []ProbeToken // the tokens written for it
	Stderr string       // the probe's stderr
}

// ProbeToken is a TokenRequest token written where the pod's env points the SDK.
type ProbeToken struct {
	EnvVar            string // AWS_WEB_IDENTITY_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
	PodPath           string // the path in the pod
	File              string // where the probe reads it
	Volume            string // the projected volume it comes from
	Audience          string // from the projection ("" = the apiserver's default audiences)
	ExpirationSeconds int64
	Token             string
	Claims            map[string]any // decoded, unverified payload
}

// EnvValue returns the value of name in the probe's environment.
func (r ProbeResult) EnvValue(name string) (string, bool) {
	for _, kv := range r.Env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// ProbePodCredentials runs the real AWS SDK default credential chain with the
// environment of container in the stored pod, the way the container would:
//
//   - every env var of the container is passed as is (valueFrom/envFrom fail the test);
//   - a token file variable must point into a mounted projected serviceAccountToken
//     volume; the test requests that token with TokenRequest (the projection's audience
//     and expirationSeconds, bound to the pod, as the kubelet does), writes it to a temp
//     file and points the variable there;
//   - AWS_CONTAINER_CREDENTIALS_FULL_URI keeps its path but goes to the local endpoint;
//   - added: AWS_ENDPOINT_URL_STS and AWS_CA_BUNDLE (local STS), AWS_REGION when the
//     container sets no region, HOME (empty temp dir: no shared config or credentials
//     files) and AWS_EC2_METADATA_DISABLED=true, so a broken env can never fall through
//     to a real instance role when the suite runs on EC2.
//
// Nothing else from the test process reaches the probe.
func (c *Cluster) ProbePodCredentials(t testing.TB, pod *corev1.Pod, container string) ProbeResult {
	t.Helper()
	bin := BuildBinary(t, "./test/e2e/sdkprobe")
	ctr := findContainer(pod, container)
	if ctr == nil {
		t.Fatalf("pod %s/%s has no container %q", pod.Namespace, pod.Name, container)
	}
	if len(ctr.EnvFrom) > 0 {
		t.Fatalf("container %q uses envFrom, which the probe cannot resolve", container)
	}
	work := t.TempDir()
	home := filepath.Join(work, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	var res ProbeResult
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil {
			t.Fatalf("container %q env %s uses valueFrom, which the probe cannot resolve", container, e.Name)
		}
		set(e.Name, e.Value)
	}
	for _, name := range []string{EnvWebIdentityToken, EnvContainerAuthFile} {
		podPath, ok := env[name]
		if !ok {
			continue
		}
		tok := c.requestPodToken(t, pod, ctr, name, podPath)
		tok.File = filepath.Join(work, strings.ToLower(name))
		if err := os.WriteFile(tok.File, []byte(tok.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		set(name, tok.File)
		res.Tokens = append(res.Tokens, tok)
	}
	if uri, ok := env[EnvContainerFullURI]; ok {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatalf("container %q: %s=%q: %v", container, EnvContainerFullURI, uri, err)
		}
		u.Scheme, u.Host = "http", fakes.CC.Addr()
		set(EnvContainerFullURI, u.String())
	}
	set("AWS_ENDPOINT_URL_STS", fakes.STS.URL())
	set("AWS_CA_BUNDLE", fakes.STSCAFile)
	if _, ok := env["AWS_REGION"]; !ok {
		if _, ok := env["AWS_DEFAULT_REGION"]; !ok {
			set("AWS_REGION", ProbeRegion)
		}
	}
	set("HOME", home)
	set("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range order {
		res.Env = append(res.Env, k+"="+env[k])
	}

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = res.Env
	cmd.Dir = work
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	res.Stderr = stderr.String()
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		t.Fatalf("running the SDK probe: %v", runErr)
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("SDK probe output %q (stderr %q): %v", stdout.String(), stderr.String(), err)
	}
	if res.OK != (runErr == nil) {
		t.Fatalf("SDK probe exit status %v disagrees with its output %s", runErr, stdout.String())
	}
	t.Logf("SDK probe: ok=%v source=%s key=%s code=%s error=%s", res.OK, res.Source, res.AccessKeyID, res.ErrorCode, res.Error)
	return res
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// requestPodToken finds the projected serviceAccountToken behind podPath (a file
// under one of ctr's volume mounts) and requests the same token from the apiserver.
func (c *Cluster) requestPodToken(t testing.TB, pod *corev1.Pod, ctr *corev1.Container, envVar, podPath string) ProbeToken {
	t.Helper()
	var mount *corev1.VolumeMount
	var rel string
	for i := range ctr.VolumeMounts {
		m := &ctr.VolumeMounts[i]
		r, err := filepath.Rel(m.MountPath, podPath)
		if err != nil || r == "." || r == ".." || strings.HasPrefix(r, "../") {
			continue
		}
		if mount == nil || len(m.MountPath) > len(mount.MountPath) {
			mount, rel = m, r
		}
	}
	if mount == nil {
		t.Fatalf("%s=%s is not under any volume mount of container %q (mounts %v)", envVar, podPath, ctr.Name, mountPaths(ctr))
	}
	var vol *corev1.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == mount.Name {
			vol = &pod.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Projected == nil {
		t.Fatalf("%s=%s: mount %q at %s is not a projected volume of the pod", envVar, podPath, mount.Name, mount.MountPath)
	}
	var src *corev1.ServiceAccountTokenProjection
	for _, s := range vol.Projected.Sources {
		if s.ServiceAccountToken != nil && filepath.Clean(s.ServiceAccountToken.Path) == rel {
			src = s.ServiceAccountToken
		}
	}
	if src == nil {
		t.Fatalf("%s=%s: projected volume %q has no serviceAccountToken with path %q", envVar, podPath, vol.Name, rel)
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		tr.Spec.Audiences = []string{src.Audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	got, err := c.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), sa, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s (audience %q): %v", pod.Namespace, sa, src.Audience, err)
	}
	pt := ProbeToken{EnvVar: envVar, PodPath: podPath, Volume: vol.Name, Audience: src.Audience, Token: got.Status.Token}
	if src.ExpirationSeconds != nil {
		pt.ExpirationSeconds = *src.ExpirationSeconds
	}
	pt.Claims, err = decodeClaims(got.Status.Token)
	if err != nil {
		t.Fatalf("TokenRequest returned an unreadable token: %v", err)
	}
	return pt
}

func mountPaths(ctr *corev1.Container) []string {
	var ps []string
	for _, m := range ctr.VolumeMounts {
		ps = append(ps, m.Name+"="+m.MountPath)
	}
	sort.Strings(ps)
	return ps
}

// decodeClaims returns a JWT's payload without verifying it.
func decodeClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return m, d.Decode(&m)
}
