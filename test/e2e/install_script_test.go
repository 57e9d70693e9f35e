package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// TestInstallScript runs deploy/install.sh and deploy/uninstall.sh, the documented install
// path (deploy/README.md, "Install with the script"), verbatim against the harness's API
// server with --dry-run=server and --kubeconfig: kustomize and Helm, each with the default
// options and with --namespace, --with-site-bundle, --watch-namespaces and --image. It
// checks that the scripts print the commands they run, that the API server accepted every
// object they submit (kubectl's "... (server dry run)" lines cover every object
// deploy/render.sh renders for that mode), that the verification hints name the right
// namespace and kubeconfig, and that the prerequisite checks fail clearly. Nothing is
// stored: no MutatingWebhookConfiguration is left behind.
//
// kubectl must be on PATH (it is on the development machines and in CI): without it the
// test fails, it does not skip. --helm uses $HELM, else helm on PATH, else the build
// deploy/scripts/tools.sh caches (as deploy/render.sh helm does for TestDeployManifestsDryRun).
//
// Namespaces: DeployNamespace (shared with TestDeployManifestsDryRun) gets the label
// install.sh puts on a namespace it creates, so the default runs apply the Namespace
// object too; piw-install-script exists without it (a namespace install.sh did not
// create), so those runs leave it alone. Both stay until the cluster goes.
func TestInstallScript(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl is not on PATH: deploy/install.sh needs it (%v)", err)
	}
	InstallCertManagerCRDs(t)
	const custom = "piw-install-script"
	ensureNamespace(t, DeployNamespace, map[string]string{"app.kubernetes.io/part-of": "pod-identity-webhook"})
	ensureNamespace(t, custom, nil)
	kcfg := cluster.KubeconfigPath
	const image = "registry.example.com/pod-identity-webhook:v1.2.3"

	// What deploy/render.sh renders for each mode, as kubectl names the objects.
	rendered := map[string][]string{}
	for _, target := range []string{"base", "site-bundle", "helm"} {
		for _, o := range RenderDeploy(t, target) {
			rendered[target] = append(rendered[target], kubectlName(o))
		}
	}
	bundleConfigMap := "configmap/pod-identity-webhook-bundle-session-name"
	if !slices.Contains(rendered["site-bundle"], bundleConfigMap) {
		t.Fatalf("deploy/render.sh site-bundle has no %s: %v", bundleConfigMap, rendered["site-bundle"])
	}
	without := func(names []string, drop string) []string {
		return slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == drop })
	}
	nsObject := "namespace/" + DeployNamespace

	root := repoRoot
	q := regexp.QuoteMeta
	for _, tc := range []struct {
		name string
		args []string
		ns   string
		want []string // objects the API server must accept
		// Patterns the output must match (each against the whole output, multi-line).
		patterns []string
	}{
		{
			name: "kustomize",
			args: []string{"--kustomize"},
			ns:   DeployNamespace,
			want: rendered["base"],
			patterns: []string{
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` apply -k ` + q(root+"/deploy/base") + ` --dry-run=server$`,
				`(?m)^namespace/` + DeployNamespace + ` (configured|unchanged) \(server dry run\)$`,
			},
		},
		{
			name: "kustomize with site bundle",
			args: []string{"--kustomize", "--namespace", custom, "--with-site-bundle", "--watch-namespaces", "--image", image},
			ns:   custom,
			// piw-install-script was not created by install.sh: no Namespace object.
			want: without(rendered["site-bundle"], nsObject),
			patterns: []string{
				`(?m)^install\.sh: namespace ` + custom + ` exists and was not created by install\.sh`,
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` apply -k \S+/overlay --dry-run=server$`,
				`(?m)^    namespace: ` + custom + `$`,
				`(?m)^      - (\.\./)+\S*deploy/examples/site-bundle$`,
				`(?m)^      - (\.\./)+\S*deploy/components/watch-namespaces$`,
				`(?m)^        newName: registry\.example\.com/pod-identity-webhook\n        newTag: "v1\.2\.3"$`,
				`(?m)^\s+\$patch: delete$`,
				`value: \[pod-identity-webhook\.` + custom + `\.svc, pod-identity-webhook\.` + custom + `\.svc\.cluster\.local\]`,
				`(?m)^` + q(bundleConfigMap) + ` created \(server dry run\)$`,
			},
		},
		{
			name: "helm",
			args: []string{"--helm"},
			ns:   DeployNamespace,
			want: rendered["helm"],
			patterns: []string{
				`(?m)^\+ \S*helm --kubeconfig ` + q(kcfg) + ` upgrade --install pod-identity-webhook ` + q(root+"/deploy/helm/pod-identity-webhook") +
					` --namespace ` + DeployNamespace + ` --dry-run=server$`,
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` apply --dry-run=server --namespace ` + DeployNamespace + ` -f \S+/manifest\.yaml$`,
				`(?m)^MANIFEST: \(omitted here`,
			},
		},
		{
			name: "helm with site bundle",
			args: []string{"--helm", "--namespace", custom, "--with-site-bundle", "--watch-namespaces", "--image", image},
			ns:   custom,
			want: append(slices.Clone(rendered["helm"]), bundleConfigMap),
			patterns: []string{
				`(?m)^\+ \S*helm --kubeconfig ` + q(kcfg) + ` upgrade --install pod-identity-webhook ` + q(root+"/deploy/helm/pod-identity-webhook") +
					` --namespace ` + custom + ` --set-string image\.repository=registry\.example\.com/pod-identity-webhook --set-string image\.tag=v1\.2\.3` +
					` --set flags\.cluster\.watch-namespaces=true` +
					` --set-file 'siteBundles\.session-name\.manifest\\\.yaml=` + q(root) + `/deploy/examples/site-bundle/session-name/manifest\.yaml'` +
					` .*--dry-run=server$`,
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` apply --dry-run=server --namespace ` + custom + ` -f \S+/manifest\.yaml$`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(slices.Clone(tc.args), "--dry-run=server", "--kubeconfig", kcfg)
			out, code := runDeployScript(t, nil, "install.sh", args...)
			if code != 0 {
				t.Fatalf("deploy/install.sh %s: exit code %d", strings.Join(args, " "), code)
			}
			checkServerDryRun(t, out, tc.want)
			for _, p := range append(tc.patterns,
				`(?m)^install\.sh: dry run \(server\) done: nothing was changed`,
				`(?m)^  kubectl --kubeconfig `+q(kcfg)+` -n `+tc.ns+` rollout status deploy/pod-identity-webhook$`,
				`(?m)^    pod-identity-webhook eval --pod - --kubeconfig `+q(kcfg)+` --namespace `+tc.ns+` --watch-config-map .*-o explain$`,
			) {
				if !regexp.MustCompile(p).MatchString(out) {
					t.Errorf("the output does not match %s", p)
				}
			}
		})
	}

	t.Run("prerequisite checks", func(t *testing.T) {
		badKubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := os.ReadFile(kcfg)
		if err != nil {
			t.Fatal(err)
		}
		unreachable := regexp.MustCompile(`server: https://[^\s]+`).ReplaceAll(cfg, []byte(fmt.Sprintf("server: https://127.0.0.1:%d", port)))
		if err := os.WriteFile(badKubeconfig, unreachable, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			env  []string
			args []string
			code int
			want string
		}{
			{"kubectl missing", []string{"KUBECTL=/nonexistent/kubectl"}, nil, 1, "install.sh: kubectl not found"},
			{"bad --dry-run", nil, []string{"--dry-run=maybe"}, 2, "--dry-run must be server, client or none"},
			{"bad --namespace", nil, []string{"--namespace", "Not_A_Name"}, 2, "is not a valid namespace name"},
			{"unknown option", nil, []string{"--helm-chart"}, 2, "unknown option --helm-chart"},
			{"API server unreachable", nil, []string{"--kubeconfig", badKubeconfig}, 1, "cannot reach the API server of context"},
			{"server dry run into a missing namespace", nil, []string{"--namespace", "piw-install-missing", "--dry-run=server"}, 1,
				"namespace piw-install-missing does not exist"},
		} {
			args := append([]string{"--dry-run=server", "--kubeconfig", kcfg}, tc.args...)
			out, code := runDeployScript(t, tc.env, "install.sh", args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("%s: exit code %d (want %d), output should say %q:\n%s", tc.name, code, tc.code, tc.want, out)
			}
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		// Real objects for the dry-run deletes to find (harmless: a ServiceAccount and an
		// empty Secret in a namespace only this test uses).
		_, err := cluster.Client.CoreV1().ServiceAccounts(custom).Create(t.Context(),
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "pod-identity-webhook"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		_, err = cluster.Client.CoreV1().Secrets(custom).Create(t.Context(),
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pod-identity-webhook-tls"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name     string
			args     []string
			patterns []string
		}{
			{"kustomize", []string{"--kustomize"}, []string{
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` delete mutatingwebhookconfiguration pod-identity-webhook --ignore-not-found --dry-run=server$`,
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` delete -k \S+/overlay --ignore-not-found --dry-run=server$`,
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` delete secret --namespace ` + DeployNamespace + ` pod-identity-webhook-tls pod-identity-webhook-ca --ignore-not-found --dry-run=server$`,
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` delete namespace ` + DeployNamespace + ` --ignore-not-found --dry-run=server$`,
				`(?m)^namespace "` + DeployNamespace + `" deleted \(server dry run\)$`,
			}},
			{"kustomize with site bundle", []string{"--kustomize", "--namespace", custom, "--with-site-bundle", "--watch-namespaces", "--image", image}, []string{
				`(?m)^      - (\.\./)+\S*deploy/examples/site-bundle$`,
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` delete -k \S+/overlay --ignore-not-found --dry-run=server$`,
				`(?m)^serviceaccount "pod-identity-webhook" deleted \(server dry run\)$`,
				`(?m)^secret "pod-identity-webhook-tls" deleted \(server dry run\)$`,
				`(?m)^uninstall\.sh: namespace ` + custom + ` kept: install\.sh did not create it`,
			}},
			{"helm", []string{"--helm"}, []string{
				`(?m)^uninstall\.sh: no Helm release pod-identity-webhook in namespace ` + DeployNamespace,
				`(?m)^namespace "` + DeployNamespace + `" deleted \(server dry run\)$`,
			}},
			{"helm with site bundle", []string{"--helm", "--namespace", custom, "--with-site-bundle", "--watch-namespaces"}, []string{
				`(?m)^\+ kubectl --kubeconfig ` + q(kcfg) + ` delete mutatingwebhookconfiguration pod-identity-webhook --ignore-not-found --dry-run=server$`,
				`(?m)^uninstall\.sh: no Helm release pod-identity-webhook in namespace ` + custom,
				`(?m)^secret "pod-identity-webhook-tls" deleted \(server dry run\)$`,
				`(?m)^uninstall\.sh: namespace ` + custom + ` kept`,
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append(slices.Clone(tc.args), "--dry-run=server", "--kubeconfig", kcfg)
				out, code := runDeployScript(t, nil, "uninstall.sh", args...)
				if code != 0 {
					t.Fatalf("deploy/uninstall.sh %s: exit code %d", strings.Join(args, " "), code)
				}
				for _, p := range append(tc.patterns, `(?m)^uninstall\.sh: dry run \(server\) done: nothing was changed`) {
					if !regexp.MustCompile(p).MatchString(out) {
						t.Errorf("the output does not match %s", p)
					}
				}
				if m := regexp.MustCompile(`(?m)^.*(Error|error:).*$`).FindString(out); m != "" {
					t.Errorf("the output has an error: %s", m)
				}
			})
		}
		// The dry runs deleted nothing.
		if got, err := cluster.Client.CoreV1().ServiceAccounts(custom).Get(t.Context(), "pod-identity-webhook", metav1.GetOptions{}); err != nil || got.DeletionTimestamp != nil {
			t.Errorf("ServiceAccount %s/pod-identity-webhook after the dry runs: %v (error %v)", custom, got.GetDeletionTimestamp(), err)
		}
		for _, ns := range []string{DeployNamespace, custom} {
			got, err := cluster.Client.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
			if err != nil || got.DeletionTimestamp != nil {
				t.Errorf("namespace %s after the dry runs: %v (error %v)", ns, got.GetDeletionTimestamp(), err)
			}
		}
	})

	if _, err := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), "pod-identity-webhook", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dry runs left a MutatingWebhookConfiguration pod-identity-webhook behind (error %v)", err)
	}
}

// runDeployScript runs deploy/NAME args... from the clone's root, with KUBECONFIG unset
// (the scripts get --kubeconfig), a private kubectl discovery cache and env added, and
// returns its output (stdout and stderr, interleaved) and exit code. It fails the test
// when the script cannot be run or times out.
func runDeployScript(t *testing.T, env []string, name string, args ...string) (string, int) {
	t.Helper()
	// 15 minutes: the first --helm run may build Helm into the tools cache.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "deploy", name), args...)
	cmd.Dir = repoRoot
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "KUBECACHEDIR=")
	}), "KUBECACHEDIR="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	start := time.Now()
	b, err := cmd.CombinedOutput()
	out := string(b)
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			t.Fatalf("deploy/%s %s: %v (context: %v)\n%s", name, strings.Join(args, " "), err, ctx.Err(), out)
		}
		code = ee.ExitCode()
	}
	t.Logf("deploy/%s %s: exit code %d in %s\n%s", name, strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), out)
	return out, code
}

// checkServerDryRun fails the test unless the output of kubectl apply --dry-run=server
// in out names every object in want as accepted, and reports no error.
func checkServerDryRun(t *testing.T, out string, want []string) {
	t.Helper()
	accepted := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^(\S+/\S+) (created|configured|unchanged) \(server dry run\)$`).FindAllStringSubmatch(out, -1) {
		accepted[m[1]] = true
	}
	var missing []string
	for _, w := range want {
		if !accepted[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the API server did not accept (no %q line for) %d of %d objects: %v", "... (server dry run)", len(missing), len(want), missing)
	}
	if len(accepted) < len(want) {
		t.Errorf("%d objects accepted, want %d", len(accepted), len(want))
	}
	if m := regexp.MustCompile(`(?m)^.*(Error from server|error:|[Ee]rror when).*$`).FindString(out); m != "" {
		t.Errorf("kubectl reported an error: %s", m)
	}
}

// kubectlName is how kubectl apply names an object in its output: kind.group/name
// (kind lower-case, no group for the core API).
func kubectlName(o *unstructured.Unstructured) string {
	gvk := o.GroupVersionKind()
	k := strings.ToLower(gvk.Kind)
	if gvk.Group != "" {
		k += "." + gvk.Group
	}
	return k + "/" + o.GetName()
}

// ensureNamespace creates namespace name with labels, or adds the labels to it when it
// exists.
func ensureNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	_, err := cluster.Client.CoreV1().Namespaces().Create(t.Context(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err == nil || !apierrors.IsAlreadyExists(err) {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if len(labels) == 0 {
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if _, err := cluster.Client.CoreV1().Namespaces().Patch(t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}
