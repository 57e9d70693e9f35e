package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// DeployNamespace is where deploy/base and the Helm chart (as render.sh renders it) put
// everything.
const DeployNamespace = "pod-identity-webhook"

// RenderDeploy runs deploy/render.sh args... and returns the objects it printed.
func RenderDeploy(t testing.TB, args ...string) []*unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "deploy", "render.sh"), args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("deploy/render.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	objs, err := decodeManifests(stdout.Bytes())
	if err != nil {
		t.Fatalf("deploy/render.sh %s printed something that is not Kubernetes YAML: %v", strings.Join(args, " "), err)
	}
	if len(objs) == 0 {
		t.Fatalf("deploy/render.sh %s printed no objects", strings.Join(args, " "))
	}
	return objs
}

func decodeManifests(b []byte) ([]*unstructured.Unstructured, error) {
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document %d has no apiVersion, kind or name: %v", len(out)+1, m)
		}
		out = append(out, u)
	}
}

func findObject(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// TestDeployManifestsDryRun: every object deploy/render.sh renders (the kustomize base,
// its site-bundle overlay and watch-namespaces component, and the Helm chart with its
// default values) is accepted by the API server: server-side apply with dryRun=All and
// strict field validation, after what they need was installed for real (cert-manager's
// CRDs, minimal, and the namespace). Dry run registers nothing, so the manifests'
// MutatingWebhookConfiguration (pointing at a Service without endpoints, under
// failurePolicy Fail) never affects the other tests.
//
// The CRDs and the namespace are cluster-wide but used by no other test; they stay
// until the cluster goes (without a controller-manager a namespace is never deleted).
func TestDeployManifestsDryRun(t *testing.T) {
	t.Parallel()
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := InstallCertManagerCRDs(t)
	_, err = cluster.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DeployNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	apply := func(ctx context.Context, obj *unstructured.Unstructured) error {
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("no API for %s: %w", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := obj.GetNamespace()
			if ns == "" {
				ns = DeployNamespace
			}
			ri = dyn.Resource(mapping.Resource).Namespace(ns)
		} else if obj.GetNamespace() != "" {
			return fmt.Errorf("cluster-scoped, but has namespace %q", obj.GetNamespace())
		}
		data, err := runtime.Encode(unstructured.UnstructuredJSONScheme, obj)
		if err != nil {
			return err
		}
		_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
			DryRun: []string{metav1.DryRunAll}, FieldManager: "e2e-deploy-dry-run", Force: ptrTo(true), FieldValidation: "Strict",
		})
		return err
	}

	t.Run("the check catches a misspelt field", func(t *testing.T) {
		dep := findObject(RenderDeploy(t, "base"), "Deployment", "pod-identity-webhook")
		if dep == nil {
			t.Fatal("deploy/base has no Deployment pod-identity-webhook")
		}
		dep = dep.DeepCopy()
		_ = unstructured.SetNestedField(dep.Object, int64(2), "spec", "replicass")
		if err := apply(t.Context(), dep); err == nil || !strings.Contains(err.Error(), "replicass") {
			t.Fatalf("a Deployment with spec.replicass was not refused: %v", err)
		}
	})

	for _, target := range [][]string{{"base"}, {"site-bundle"}, {"watch-namespaces"}, {"helm"}} {
		t.Run(strings.Join(target, " "), func(t *testing.T) {
			objs := RenderDeploy(t, target...)
			kinds := map[string]int{}
			var failed []string
			for _, obj := range objs {
				kinds[obj.GetKind()]++
				if err := apply(t.Context(), obj); err != nil {
					failed = append(failed, fmt.Sprintf("%s %s/%s: %v", obj.GetAPIVersion()+" "+obj.GetKind(), obj.GetNamespace(), obj.GetName(), err))
				}
			}
			if len(failed) > 0 {
				t.Fatalf("deploy/render.sh %s: the API server refused %d of %d objects:\n  %s", strings.Join(target, " "), len(failed), len(objs), strings.Join(failed, "\n  "))
			}
			for _, k := range []string{"Deployment", "Service", "MutatingWebhookConfiguration", "Certificate", "Issuer", "ServiceAccount", "ClusterRole", "Role"} {
				if kinds[k] == 0 {
					t.Errorf("no %s among the rendered objects (%v)", k, kinds)
				}
			}
			t.Logf("%d objects accepted: %v", len(objs), kinds)
		})
	}

	// Dry run stored nothing.
	if _, err := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), "pod-identity-webhook", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dry run left a MutatingWebhookConfiguration pod-identity-webhook behind (error %v)", err)
	}
}

func ptrTo[T any](v T) *T { return &v }

// ManifestWebhooks returns the MutatingWebhookConfiguration deploy/render.sh base
// renders.
func ManifestWebhooks(t testing.TB) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	u := findObject(RenderDeploy(t, "base"), "MutatingWebhookConfiguration", "pod-identity-webhook")
	if u == nil {
		t.Fatal("deploy/base has no MutatingWebhookConfiguration pod-identity-webhook")
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mwc); err != nil {
		t.Fatal(err)
	}
	return &mwc
}
