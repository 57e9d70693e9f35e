package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/sources"
)

type evalOptions struct {
	pod               string
	serviceAccount    string
	identityConfigMap string
	namespaceObject   string
	output            string
}

func newEvalCommand(stdin io.Reader) *cobra.Command {
	o := &evalOptions{}
	cmd := &cobra.Command{
		Use:   "eval --pod FILE|- [flags]",
		Short: "Show what the webhook would do to a pod, and why",
		Long: `eval runs the same policies, with the same flags, as the webhook server, on a pod
given as a file, and prints the mutated pod, the patch, or an explanation of which
policies applied and why.

--pod takes a Pod or an AdmissionReview (YAML or JSON, "-" for stdin). Without
--service-account the ServiceAccount counts as not found, unless --kubeconfig is given,
when it is read from the cluster (as are the kOps ConfigMap with --watch-config-map and
the pod's Namespace).

Exit codes: 0 success (mutated or not), 1 a policy failed, 2 bad usage or input.`,
		Example: `  pod-identity-webhook eval --pod pod.yaml --service-account sa.yaml -o explain
  pod-identity-webhook eval --pod pod.yaml --service-account sa.yaml --bundle site/ -o patch
  kubectl get pod p -o yaml | pod-identity-webhook eval --pod - --kubeconfig ~/.kube/config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEval(cmd, stdin, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.pod, "pod", "", "Pod or AdmissionReview to evaluate (YAML or JSON; - for stdin)")
	fs.StringVar(&o.serviceAccount, "service-account", "", "The pod's ServiceAccount manifest")
	fs.StringVar(&o.identityConfigMap, "identity-configmap", "", "A pod-identity-webhook ConfigMap manifest (kOps format), as if --watch-config-map had found it")
	fs.StringVar(&o.namespaceObject, "namespace-object", "", "The pod's Namespace manifest, for policies that read namespaceObject")
	fs.StringVarP(&o.output, "output", "o", "yaml", "Output: yaml or json (the mutated pod), patch (the JSON Patch), explain (which policies applied and why)")
	config.AddMutationFlags(fs)
	config.AddPolicyFlags(fs)
	config.AddClusterFlags(fs)
	return cmd
}

func runEval(cmd *cobra.Command, stdin io.Reader, o *evalOptions) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	switch o.output {
	case "yaml", "json", "patch", "explain":
	default:
		return usageError("--output: must be yaml, json, patch or explain, got %q", o.output)
	}
	if o.pod == "" {
		return usageError("--pod: required (a Pod or AdmissionReview file, or - for stdin)")
	}
	if o.pod == "-" && o.serviceAccount == "-" {
		return usageError("--pod and --service-account cannot both read stdin")
	}
	cfg, err := config.Load(cmd.Flags(), os.Environ())
	if err != nil {
		return usageError("%v", err)
	}
	program, err := loadProgram(ctx, cfg)
	if err != nil {
		return usageError("%v", err)
	}
	pod, err := readPod(o.pod, stdin)
	if err != nil {
		return usageError("%v", err)
	}
	src, err := evalSources(ctx, cfg, o, pod, stdin)
	if err != nil {
		return err
	}
	adm := &admission.Admitter{Program: func() *engine.Program { return program }, Sources: src, Explain: o.output == "explain"}
	d, err := adm.Admit(ctx, pod.attrs, pod.object)
	if err != nil {
		return usageError("%s: %v", o.pod, err)
	}
	if err := writeEvalOutput(cmd.OutOrStdout(), o.output, d); err != nil {
		return err
	}
	if d.ServiceAccountError != nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("reading ServiceAccount %s/%s: %v", d.Namespace, d.ServiceAccount, d.ServiceAccountError)}
	}
	if failed := d.Result.Failed(); len(failed) > 0 {
		f := failed[0]
		return &ExitError{Code: 1, Err: fmt.Errorf("policy %s/%s failed: %s", f.Bundle, f.Policy, f.Error)}
	}
	return nil
}

// evalSources gathers the ServiceAccount, Namespace, identities and ConfigMap from
// files, or from the cluster with --kubeconfig.
func evalSources(ctx context.Context, cfg *config.Config, o *evalOptions, pod *podInput, stdin io.Reader) (*sources.Static, error) {
	src := &sources.Static{}
	var client kubernetes.Interface
	if cfg.Kubeconfig != "" || cfg.KubeAPI != "" {
		c, err := kubeClient(cfg)
		if err != nil {
			return nil, usageError("--kubeconfig: %v", err)
		}
		client = c
	}
	if o.serviceAccount != "" {
		sa, err := readServiceAccount(o.serviceAccount, stdin, cfg.AnnotationPrefix)
		if err != nil {
			return nil, usageError("%v", err)
		}
		if sa.Namespace == "" {
			sa.Namespace = pod.attrs.Namespace
		}
		src.ServiceAccounts = append(src.ServiceAccounts, sa)
	} else if client != nil {
		var ref podRef
		_ = json.Unmarshal(pod.object, &ref)
		sa, err := client.CoreV1().ServiceAccounts(pod.attrs.Namespace).Get(ctx, ref.Spec.ServiceAccountName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, usageError("reading ServiceAccount %s/%s: %v", pod.attrs.Namespace, ref.Spec.ServiceAccountName, err)
		default:
			src.ServiceAccounts = append(src.ServiceAccounts, sources.StripServiceAccount(sa, cfg.AnnotationPrefix))
		}
	}
	if o.namespaceObject != "" {
		ns, err := readNamespace(o.namespaceObject, stdin)
		if err != nil {
			return nil, usageError("%v", err)
		}
		src.Namespaces = append(src.Namespaces, ns)
	} else if client != nil {
		ns, err := client.CoreV1().Namespaces().Get(ctx, pod.attrs.Namespace, metav1.GetOptions{})
		if err == nil {
			src.Namespaces = append(src.Namespaces, sources.NamespaceObject(ns))
		}
	}
	if path := cfg.WatchContainerCredentialsConfig; path != "" {
		ids, err := readIdentities(path)
		if err != nil {
			return nil, usageError("--watch-container-credentials-config: %v", err)
		}
		src.IdentitySet = ids
	}
	if o.identityConfigMap != "" {
		m, err := readRoleMappingConfigMap(o.identityConfigMap, stdin)
		if err != nil {
			return nil, usageError("--identity-configmap: %v", err)
		}
		src.RoleMappings = m
	} else if client != nil && cfg.WatchConfigMap {
		cm, err := client.CoreV1().ConfigMaps(cfg.Namespace).Get(ctx, sources.RoleMappingConfigMapName, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, usageError("reading ConfigMap %s/%s: %v", cfg.Namespace, sources.RoleMappingConfigMapName, err)
		}
		if err == nil {
			m, problems, perr := sources.ParseRoleMappings(cm.Data[sources.RoleMappingKey])
			if perr != nil {
				return nil, usageError("ConfigMap %s/%s: %v", cfg.Namespace, cm.Name, perr)
			}
			if len(problems) > 0 {
				return nil, usageError("ConfigMap %s/%s: data.%s: %v", cfg.Namespace, cm.Name, sources.RoleMappingKey, problems[0])
			}
			src.RoleMappings = m
		}
	}
	return src, nil
}

func writeEvalOutput(w io.Writer, format string, d *admission.Decision) error {
	switch format {
	case "explain":
		if d.ServiceAccountError != nil {
			fmt.Fprintf(w, "warning: the ServiceAccount could not be read: %v\n", d.ServiceAccountError)
		}
		return d.Result.WriteExplain(w)
	case "patch":
		patch := d.Result.Patch
		if patch == nil {
			patch = []engine.Op{}
		}
		out, err := json.MarshalIndent(patch, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", out)
		return err
	}
	pod, err := d.Result.Pod()
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		y, err := yaml.JSONToYAML(out)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}

// podRef is the part of a pod eval reads itself.
type podRef struct {
	Spec struct {
		ServiceAccountName string `json:"serviceAccountName"`
	} `json:"spec"`
}
