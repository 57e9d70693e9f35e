// Command manifestcheck checks rendered deployment manifests offline, without an API
// server: deploy/validate.sh runs it on the output of kustomize and helm template.
//
//	manifestcheck docs [-all-flags] [-flags-from HELP_FILE] FILE...
//	    every document has apiVersion, kind and metadata.name; core kinds decode strictly
//	    into their Go types (an unknown or misspelt field fails); the Deployment's args
//	    parse with the webhook's own flag set and configuration loader (names, types,
//	    validation), and -all-flags requires every flag to be passed; matchConditions
//	    compile as CEL; the objects agree with each other (Service, ports, probes,
//	    certificate, RBAC for the enabled sources, namespace exclusion, timeouts,
//	    termination grace period, hardening).
//	manifestcheck same A B
//	    A and B hold the same objects (kind, namespace, name; Namespace objects aside) and
//	    the same Deployment args, pod settings and webhook settings: the Helm chart with
//	    its default values renders what the kustomize base does.
//	manifestcheck values VALUES_YAML FLAG_DEFAULTS_YAML [HELPERS_TPL]
//	    the chart's flag-defaults.yaml lists every flag with the binary's default, and its
//	    values.yaml has exactly one value per flag under flags.<group>, equal to that
//	    default except for the flags the chart always passes (the same list as the
//	    template's $always in HELPERS_TPL).
//
// Exit status 1 with one line per problem on stderr.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/spf13/pflag"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/pod-identity-webhook/pod-identity-webhook/config"
)

// alwaysPassed are the flags the manifests always pass, whatever their value; the
// chart's values.yaml may differ from the binary's default only for these.
var alwaysPassed = []string{
	"in-cluster", "port", "metrics-port", "tls-cert", "tls-key", "namespace",
	"watch-config-map", "service-account-lookup-grace-period", "shutdown-delay",
	"shutdown-grace-period",
}

// notValues are flags the chart deliberately has no value for.
var notValues = map[string]string{"version": "prints the version and exits", "help": "prints help"}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var problems []string
	var err error
	switch os.Args[1] {
	case "docs":
		problems, err = runDocs(os.Args[2:])
	case "same":
		problems, err = runSame(os.Args[2:])
	case "values":
		problems, err = runValues(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "manifestcheck:", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "manifestcheck:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: manifestcheck docs [-all-flags] [-flags-from HELP] FILE... | same A B | values VALUES_YAML FLAG_DEFAULTS_YAML")
	os.Exit(2)
}

// webhookFlagSet is the server's flag set, as config defines it.
func webhookFlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	config.AddMutationFlags(fs)
	config.AddPolicyFlags(fs)
	config.AddClusterFlags(fs)
	config.AddServeFlags(fs)
	return fs
}

func flagNames(fs *pflag.FlagSet) map[string]bool {
	names := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
	return names
}

// ---- documents --------------------------------------------------------------------

type doc struct {
	file      string
	index     int
	raw       []byte
	kind      string
	namespace string
	name      string
	obj       any // typed object for the kinds below, else nil
}

func (d *doc) String() string {
	if d.namespace != "" {
		return fmt.Sprintf("%s: %s %s/%s", d.file, d.kind, d.namespace, d.name)
	}
	return fmt.Sprintf("%s: %s %s", d.file, d.kind, d.name)
}

func typedFor(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/ResourceQuota":
		return &corev1.ResourceQuota{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}
	case "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration":
		return &admissionregistrationv1.MutatingWebhookConfiguration{}
	}
	return nil
}

// knownKinds are the kinds without Go types here that the manifests may hold.
var knownKinds = map[string]bool{
	"cert-manager.io/v1/Issuer":               true,
	"cert-manager.io/v1/Certificate":          true,
	"monitoring.coreos.com/v1/ServiceMonitor": true,
}

func readDocs(file string) ([]*doc, []string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var docs []*doc
	var problems []string
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		var generic map[string]any
		if err := yaml.Unmarshal(raw, &generic); err != nil {
			problems = append(problems, fmt.Sprintf("%s: document %d: not YAML: %v", file, i, err))
			continue
		}
		if len(generic) == 0 {
			continue // only comments
		}
		if err := yaml.Unmarshal(raw, &head); err != nil {
			problems = append(problems, fmt.Sprintf("%s: document %d: %v", file, i, err))
			continue
		}
		d := &doc{file: file, index: i, raw: raw, kind: head.Kind, namespace: head.Metadata.Namespace, name: head.Metadata.Name}
		if head.APIVersion == "" || head.Kind == "" || head.Metadata.Name == "" {
			problems = append(problems, fmt.Sprintf("%s: document %d: apiVersion, kind and metadata.name are required (got %q, %q, %q)",
				file, i, head.APIVersion, head.Kind, head.Metadata.Name))
			continue
		}
		if obj := typedFor(head.APIVersion, head.Kind); obj != nil {
			if err := yaml.UnmarshalStrict(raw, obj); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", d, err))
				continue
			}
			d.obj = obj
		} else if !knownKinds[head.APIVersion+"/"+head.Kind] {
			problems = append(problems, fmt.Sprintf("%s: unexpected apiVersion/kind %s %s", d, head.APIVersion, head.Kind))
		}
		docs = append(docs, d)
	}
	return docs, problems, nil
}

// ---- docs -------------------------------------------------------------------------

func runDocs(args []string) ([]string, error) {
	fl := flag.NewFlagSet("docs", flag.ContinueOnError)
	allFlags := fl.Bool("all-flags", false, "require every flag of the binary in the Deployment's args")
	flagsFrom := fl.String("flags-from", "", "`serve --help` output: the args must also be flags listed there")
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if fl.NArg() == 0 {
		return nil, errors.New("docs: no files")
	}
	var helpFlags map[string]bool
	if *flagsFrom != "" {
		data, err := os.ReadFile(*flagsFrom)
		if err != nil {
			return nil, err
		}
		helpFlags = parseHelpFlags(string(data))
		if len(helpFlags) == 0 {
			return nil, fmt.Errorf("%s: no flags found in the help text", *flagsFrom)
		}
	}
	var problems []string
	for _, file := range fl.Args() {
		docs, ps, err := readDocs(file)
		if err != nil {
			return nil, err
		}
		problems = append(problems, ps...)
		problems = append(problems, checkSet(file, docs, *allFlags, helpFlags)...)
	}
	return problems, nil
}

var helpFlagRE = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)`)

func parseHelpFlags(help string) map[string]bool {
	names := map[string]bool{}
	for _, m := range helpFlagRE.FindAllStringSubmatch(help, -1) {
		names[m[1]] = true
	}
	return names
}

func find[T any](docs []*doc) []*doc {
	var out []*doc
	for _, d := range docs {
		if _, ok := d.obj.(T); ok {
			out = append(out, d)
		}
	}
	return out
}

// parsedArgs is a Deployment's args run through the webhook's own configuration loader.
type parsedArgs struct {
	cfg    *config.Config
	passed map[string]bool
}

func checkSet(file string, docs []*doc, allFlags bool, helpFlags map[string]bool) []string {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(file+": "+format, a...)) }

	seen := map[string]bool{}
	for _, d := range docs {
		key := d.kind + " " + d.namespace + "/" + d.name
		if seen[key] {
			bad("%s appears twice", key)
		}
		seen[key] = true
	}

	deps := find[*appsv1.Deployment](docs)
	if len(deps) != 1 {
		bad("want exactly one Deployment, got %d", len(deps))
		return problems
	}
	dep := deps[0].obj.(*appsv1.Deployment)
	ns := dep.Namespace
	if ns == "" {
		bad("the Deployment has no namespace")
	}
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		bad("want one container in the Deployment, got %d", len(pod.Containers))
		return problems
	}
	c := pod.Containers[0]

	// Args: every one must be a flag, parse with its type, and load with the real loader.
	pa, ps := parseDeploymentArgs(dep, c, helpFlags)
	for _, p := range ps {
		bad("%s", p)
	}
	if pa == nil {
		return problems
	}
	cfg := pa.cfg
	if allFlags {
		for name := range flagNames(webhookFlagSet()) {
			if _, skip := notValues[name]; !skip && !pa.passed[name] {
				bad("Deployment args: --%s is not passed (this render must set every flag)", name)
			}
		}
	}
	if cfg.InCluster {
		bad("Deployment args: --in-cluster must be false (the server refuses the CSR mode)")
	}
	selLabels := dep.Spec.Selector.MatchLabels
	if !subset(selLabels, dep.Spec.Template.Labels) {
		bad("Deployment selector %v does not match its pod labels %v", selLabels, dep.Spec.Template.Labels)
	}

	// Pod hardening and lifecycle.
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		bad("pod spec: enableServiceLinks must be false (PIW_* options; service links inject POD_IDENTITY_WEBHOOK_*)")
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		bad("pod securityContext.runAsNonRoot must be true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod securityContext.seccompProfile must be RuntimeDefault")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("container securityContext.readOnlyRootFilesystem must be true")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad("container securityContext.allowPrivilegeEscalation must be false")
	}
	if sc == nil || sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		bad("container securityContext.capabilities.drop must be [ALL]")
	}
	if cfg.Port < 1024 && !pod.HostNetwork {
		bad("--port=%d needs a privileged port; use one above 1023 (non-root)", cfg.Port)
	}
	grace := int64(30)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if need := cfg.ShutdownDelay + cfg.ShutdownGracePeriod; time.Duration(grace)*time.Second <= need {
		bad("terminationGracePeriodSeconds %d must exceed --shutdown-delay + --shutdown-grace-period (%s)", grace, need)
	}
	if cfg.ShutdownDelay <= 0 {
		bad("--shutdown-delay should be positive so that rollouts lose no admissions")
	}
	if c.Resources.Limits.Cpu() != nil && !c.Resources.Limits.Cpu().IsZero() {
		// Allowed, but the manifests deliberately have none.
		bad("container has a CPU limit; the manifests deliberately set none (throttling adds admission latency)")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		bad("container needs cpu and memory requests and a memory limit")
	}

	// Ports and probes.
	portByName := map[string]int32{}
	for _, p := range c.Ports {
		portByName[p.Name] = p.ContainerPort
	}
	if portByName["https"] != int32(cfg.Port) {
		bad("container port https is %d, --port is %d", portByName["https"], cfg.Port)
	}
	if portByName["metrics"] != int32(cfg.MetricsPort) {
		bad("container port metrics is %d, --metrics-port is %d", portByName["metrics"], cfg.MetricsPort)
	}
	for what, pr := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		want := map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"}[what]
		if pr == nil || pr.HTTPGet == nil {
			bad("%s: want an httpGet probe on %s", what, want)
			continue
		}
		if pr.HTTPGet.Path != want {
			bad("%s: path %s, want %s", what, pr.HTTPGet.Path, want)
		}
		if p := pr.HTTPGet.Port; !(p.StrVal == "metrics" || int(p.IntVal) == cfg.MetricsPort) {
			bad("%s: port %s, want the metrics port (plain HTTP)", what, p.String())
		}
		if pr.HTTPGet.Scheme != "" && pr.HTTPGet.Scheme != corev1.URISchemeHTTP {
			bad("%s: scheme %s, want HTTP", what, pr.HTTPGet.Scheme)
		}
	}

	// Certificate files: a read-only Secret volume mounted where --tls-cert/--tls-key are.
	certSecret := ""
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(cfg.TLSCert, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if !m.ReadOnly {
				bad("volume mount %s (the certificate) must be readOnly", m.MountPath)
			}
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					certSecret = v.Secret.SecretName
				}
			}
		}
	}
	if certSecret == "" {
		bad("no Secret volume is mounted where --tls-cert (%s) is", cfg.TLSCert)
	}

	// Service.
	var svc *corev1.Service
	for _, d := range find[*corev1.Service](docs) {
		s := d.obj.(*corev1.Service)
		if s.Namespace == ns && subset(s.Spec.Selector, dep.Spec.Template.Labels) && len(s.Spec.Selector) > 0 {
			svc = s
		}
	}
	if svc == nil {
		bad("no Service in %s selects the Deployment's pods", ns)
	} else {
		found := false
		for _, p := range svc.Spec.Ports {
			if p.Name == "metrics" && !(p.TargetPort.StrVal == "metrics" || int(p.TargetPort.IntVal) == cfg.MetricsPort) {
				bad("Service port metrics targets %s, not the metrics port", p.TargetPort.String())
			}
			if p.TargetPort.StrVal == "https" || int(p.TargetPort.IntVal) == cfg.Port {
				found = true
			}
		}
		if !found {
			bad("Service %s has no port targeting the webhook's https port", svc.Name)
		}
	}

	// PodDisruptionBudget.
	pdbs := find[*policyv1.PodDisruptionBudget](docs)
	for _, d := range pdbs {
		p := d.obj.(*policyv1.PodDisruptionBudget)
		if p.Spec.Selector == nil || !subset(p.Spec.Selector.MatchLabels, dep.Spec.Template.Labels) {
			bad("%s: selector does not match the Deployment's pods", d)
		}
		if p.Spec.MinAvailable != nil && dep.Spec.Replicas != nil && p.Spec.MinAvailable.IntVal >= *dep.Spec.Replicas && p.Spec.MinAvailable.Type == 0 {
			bad("%s: minAvailable %d blocks every drain with %d replicas", d, p.Spec.MinAvailable.IntVal, *dep.Spec.Replicas)
		}
	}

	// RBAC: exactly what the enabled sources need.
	problems = append(problems, checkRBAC(file, docs, dep, cfg)...)

	// Webhook configuration.
	problems = append(problems, checkWebhooks(file, docs, dep, cfg, svc, certSecret)...)

	// ConfigMaps: bundles and the kOps ConfigMap.
	for _, d := range find[*corev1.ConfigMap](docs) {
		cm := d.obj.(*corev1.ConfigMap)
		if cm.Name == "pod-identity-webhook" {
			if _, ok := cm.Data["config"]; !ok {
				bad("%s: the ConfigMap named pod-identity-webhook is the kOps role-mapping one and needs a config key", d)
			}
			if cm.Namespace != cfg.Namespace {
				bad("%s: the role-mapping ConfigMap must be in --namespace (%s)", d, cfg.Namespace)
			}
			continue
		}
		if cm.Labels["pod-identity-webhook.io/bundle"] == "" && !matchesSelector(cfg.BundleConfigMapSelector, cm.Labels) {
			continue
		}
		if !matchesSelector(cfg.BundleConfigMapSelector, cm.Labels) {
			bad("%s: labelled as a bundle but --bundle-configmap-selector=%q does not select it", d, cfg.BundleConfigMapSelector)
		}
		if cm.Namespace != cfg.Namespace {
			bad("%s: bundle ConfigMaps must be in --namespace (%s)", d, cfg.Namespace)
		}
		if _, ok := cm.Data["manifest.yaml"]; !ok {
			bad("%s: a bundle ConfigMap needs a manifest.yaml key", d)
		}
		for k := range cm.Data {
			if k != "manifest.yaml" && !strings.HasSuffix(k, ".rego") {
				bad("%s: key %q: a bundle ConfigMap may only hold manifest.yaml and *.rego", d, k)
			}
		}
		if len(cm.BinaryData) > 0 {
			bad("%s: a bundle ConfigMap may not have binaryData", d)
		}
		var m struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data["manifest.yaml"]), &m); err != nil || m.Kind != "Bundle" || m.Name == "" {
			bad("%s: manifest.yaml is not a Bundle manifest with a name (%v)", d, err)
		}
	}
	return problems
}

func parseDeploymentArgs(dep *appsv1.Deployment, c corev1.Container, helpFlags map[string]bool) (*parsedArgs, []string) {
	var problems []string
	fs := webhookFlagSet()
	known := flagNames(fs)
	env := map[string]string{}
	var environ []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = dep.Namespace
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		}
		if strings.HasPrefix(e.Name, config.EnvPrefix) && e.ValueFrom == nil {
			environ = append(environ, e.Name+"="+e.Value)
		}
	}
	if len(c.Command) > 0 {
		problems = append(problems, "Deployment: the container overrides the image's entrypoint (command)")
	}
	var args []string
	passed := map[string]bool{}
	for _, a := range c.Args {
		if !strings.HasPrefix(a, "--") || !strings.Contains(a, "=") {
			problems = append(problems, fmt.Sprintf("Deployment args: %q: use --flag=value (booleans too)", a))
			continue
		}
		name := strings.SplitN(strings.TrimPrefix(a, "--"), "=", 2)[0]
		if !known[name] {
			problems = append(problems, fmt.Sprintf("Deployment args: --%s is not a flag of the webhook (config/config.go)", name))
			continue
		}
		if helpFlags != nil && !helpFlags[name] {
			problems = append(problems, fmt.Sprintf("Deployment args: --%s is not listed by `serve --help`", name))
			continue
		}
		passed[name] = true
		// Kubernetes expands $(VAR) from the container's env.
		expanded := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := env[m[2:len(m)-1]]; ok {
				return v
			}
			return m
		})
		if strings.Contains(expanded, "$(") {
			problems = append(problems, fmt.Sprintf("Deployment args: %q refers to a variable the container does not define", a))
		}
		if name == "config" {
			continue // the file exists only in the pod
		}
		args = append(args, expanded)
	}
	if err := fs.Parse(args); err != nil {
		problems = append(problems, fmt.Sprintf("Deployment args: %v", err))
		return nil, problems
	}
	cfg, err := config.Load(fs, environ)
	if err != nil {
		problems = append(problems, fmt.Sprintf("Deployment args: the configuration does not load: %v", err))
		return nil, problems
	}
	return &parsedArgs{cfg: cfg, passed: passed}, problems
}

func checkRBAC(file string, docs []*doc, dep *appsv1.Deployment, cfg *config.Config) []string {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(file+": "+format, a...)) }
	sa := dep.Spec.Template.Spec.ServiceAccountName
	bound := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == dep.Namespace {
				return true
			}
		}
		return false
	}
	type grant struct{ group, resource, verb string }
	granted := func(rules []rbacv1.PolicyRule) map[grant]bool {
		g := map[grant]bool{}
		for _, r := range rules {
			if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
				bad("rules with resourceNames or nonResourceURLs are unexpected: %+v", r)
			}
			for _, ag := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if ag == "*" || res == "*" || v == "*" {
							bad("wildcard rule %+v: least privilege wants names", r)
						}
						g[grant{ag, res, v}] = true
					}
				}
			}
		}
		return g
	}
	cluster := map[grant]bool{}
	for _, d := range find[*rbacv1.ClusterRoleBinding](docs) {
		b := d.obj.(*rbacv1.ClusterRoleBinding)
		if !bound(b.Subjects) {
			continue
		}
		for _, rd := range find[*rbacv1.ClusterRole](docs) {
			if r := rd.obj.(*rbacv1.ClusterRole); b.RoleRef.Kind == "ClusterRole" && r.Name == b.RoleRef.Name {
				for k := range granted(r.Rules) {
					cluster[k] = true
				}
			}
		}
	}
	local := map[grant]bool{}
	for _, d := range find[*rbacv1.RoleBinding](docs) {
		b := d.obj.(*rbacv1.RoleBinding)
		if !bound(b.Subjects) || b.Namespace != cfg.Namespace {
			continue
		}
		for _, rd := range find[*rbacv1.Role](docs) {
			if r := rd.obj.(*rbacv1.Role); b.RoleRef.Kind == "Role" && r.Name == b.RoleRef.Name && r.Namespace == b.Namespace {
				for k := range granted(r.Rules) {
					local[k] = true
				}
			}
		}
	}
	want := func(have map[grant]bool, where string, g ...grant) {
		for _, x := range g {
			if !have[x] {
				bad("RBAC: the webhook's ServiceAccount lacks %s %s/%s %s", x.verb, x.group, x.resource, where)
			}
			delete(have, x)
		}
	}
	rw := func(group, resource string, verbs ...string) []grant {
		var out []grant
		for _, v := range verbs {
			out = append(out, grant{group, resource, v})
		}
		return out
	}
	want(cluster, "cluster-wide", rw("", "serviceaccounts", "get", "list", "watch")...)
	if cfg.WatchNamespaces {
		want(cluster, "cluster-wide (--watch-namespaces)", rw("", "namespaces", "get", "list", "watch")...)
	}
	for g := range cluster {
		bad("RBAC: cluster-wide %s %s/%s is more than the webhook needs", g.verb, g.group, g.resource)
	}
	if cfg.WatchConfigMap || cfg.BundleConfigMapSelector != "" {
		want(local, "in --namespace "+cfg.Namespace, rw("", "configmaps", "get", "list", "watch")...)
	}
	for _, g := range rw("", "events", "create", "patch") {
		delete(local, g) // optional: Events are best effort
	}
	for _, g := range rw("events.k8s.io", "events", "create", "patch") {
		delete(local, g)
	}
	for g := range local {
		bad("RBAC: %s %s/%s in %s is more than the webhook needs", g.verb, g.group, g.resource, cfg.Namespace)
	}
	return problems
}

func checkWebhooks(file string, docs []*doc, dep *appsv1.Deployment, cfg *config.Config, svc *corev1.Service, certSecret string) []string {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(file+": "+format, a...)) }
	mwcs := find[*admissionregistrationv1.MutatingWebhookConfiguration](docs)
	if len(mwcs) != 1 {
		bad("want exactly one MutatingWebhookConfiguration, got %d", len(mwcs))
		return problems
	}
	mwc := mwcs[0].obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
	if len(mwc.Webhooks) == 0 {
		bad("the MutatingWebhookConfiguration has no webhooks")
	}
	celEnv, err := cel.NewEnv(
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("request", cel.DynType),
		cel.Variable("params", cel.DynType),
		cel.Variable("authorizer", cel.DynType),
	)
	if err != nil {
		bad("CEL environment: %v", err)
		return problems
	}
	injected := mwc.Annotations["cert-manager.io/inject-ca-from"]
	if injected != "" {
		if !certificateFor(docs, injected, certSecret, svc) {
			bad("cert-manager.io/inject-ca-from %q: no Certificate of that name writes Secret %q with the Service's DNS names", injected, certSecret)
		}
	}
	names := map[string]bool{}
	budget := cfg.ServiceAccountLookupGracePeriod + cfg.PolicyTimeout
	for _, w := range mwc.Webhooks {
		where := "webhook " + w.Name
		if names[w.Name] {
			bad("%s: duplicate name", where)
		}
		names[w.Name] = true
		if !strings.Contains(w.Name, ".") {
			bad("%s: the name must be fully qualified", where)
		}
		cc := w.ClientConfig
		if cc.Service == nil {
			bad("%s: clientConfig.service is required", where)
		} else {
			if svc != nil && (cc.Service.Name != svc.Name || cc.Service.Namespace != svc.Namespace) {
				bad("%s: calls Service %s/%s, the webhook's Service is %s/%s", where, cc.Service.Namespace, cc.Service.Name, svc.Namespace, svc.Name)
			}
			if cc.Service.Path == nil || *cc.Service.Path != "/mutate" {
				bad("%s: path must be /mutate", where)
			}
			port := int32(443)
			if cc.Service.Port != nil {
				port = *cc.Service.Port
			}
			if svc != nil {
				ok := false
				for _, p := range svc.Spec.Ports {
					if p.Port == port && (p.TargetPort.StrVal == "https" || int(p.TargetPort.IntVal) == cfg.Port) {
						ok = true
					}
				}
				if !ok {
					bad("%s: Service port %d does not lead to the webhook's https port", where, port)
				}
			}
		}
		if injected == "" && len(cc.CABundle) == 0 {
			bad("%s: no caBundle and no cert-manager.io/inject-ca-from annotation", where)
		}
		if len(w.Rules) != 1 || !reflect.DeepEqual(w.Rules[0].Operations, []admissionregistrationv1.OperationType{"CREATE"}) ||
			!reflect.DeepEqual(w.Rules[0].Resources, []string{"pods"}) || !reflect.DeepEqual(w.Rules[0].APIGroups, []string{""}) {
			bad("%s: rules must be CREATE on pods only", where)
		}
		if !reflect.DeepEqual(w.AdmissionReviewVersions, []string{"v1", "v1beta1"}) {
			bad("%s: admissionReviewVersions %v, want [v1 v1beta1]", where, w.AdmissionReviewVersions)
		}
		if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
			bad("%s: sideEffects must be None", where)
		}
		if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			bad("%s: reinvocationPolicy must be IfNeeded (containers added by later webhooks)", where)
		}
		if w.FailurePolicy == nil {
			bad("%s: failurePolicy must be explicit", where)
		}
		if w.TimeoutSeconds == nil {
			bad("%s: timeoutSeconds must be explicit", where)
		} else if t := time.Duration(*w.TimeoutSeconds) * time.Second; t <= budget || *w.TimeoutSeconds > 30 {
			bad("%s: timeoutSeconds %d must exceed --service-account-lookup-grace-period + --policy-timeout (%s) and be at most 30", where, *w.TimeoutSeconds, budget)
		}
		if !excludesNamespace(w.NamespaceSelector, dep.Namespace) {
			bad("%s: the namespaceSelector must exclude the webhook's own namespace %s (kubernetes.io/metadata.name)", where, dep.Namespace)
		}
		if !hasSkipLabel(w.ObjectSelector) {
			bad("%s: objectSelector must keep upstream's eks.amazonaws.com/skip-pod-identity-webhook DoesNotExist", where)
		}
		for _, mc := range w.MatchConditions {
			ast, iss := celEnv.Compile(mc.Expression)
			if iss != nil && iss.Err() != nil {
				bad("%s: matchCondition %s: %v", where, mc.Name, iss.Err())
				continue
			}
			if !reflect.DeepEqual(ast.OutputType(), cel.BoolType) && !reflect.DeepEqual(ast.OutputType(), cel.DynType) {
				bad("%s: matchCondition %s: returns %s, want bool", where, mc.Name, ast.OutputType())
			}
		}
	}
	return problems
}

func certificateFor(docs []*doc, ref, secret string, svc *corev1.Service) bool {
	parts := strings.SplitN(ref, "/", 2)
	if len(parts) != 2 {
		return false
	}
	for _, d := range docs {
		if d.kind != "Certificate" || d.namespace != parts[0] || d.name != parts[1] {
			continue
		}
		var cert struct {
			Spec struct {
				SecretName string   `json:"secretName"`
				DNSNames   []string `json:"dnsNames"`
			} `json:"spec"`
		}
		if yaml.Unmarshal(d.raw, &cert) != nil || cert.Spec.SecretName != secret {
			return false
		}
		if svc == nil {
			return true
		}
		want := svc.Name + "." + svc.Namespace + ".svc"
		for _, n := range cert.Spec.DNSNames {
			if n == want {
				return true
			}
		}
		return false
	}
	return false
}

func excludesNamespace(sel *metav1.LabelSelector, ns string) bool {
	if sel == nil {
		return false
	}
	for _, e := range sel.MatchExpressions {
		if e.Key != "kubernetes.io/metadata.name" {
			continue
		}
		switch e.Operator {
		case "NotIn":
			for _, v := range e.Values {
				if v == ns {
					return true
				}
			}
		case "In":
			found := false
			for _, v := range e.Values {
				if v == ns {
					found = true
				}
			}
			if !found {
				return true
			}
		}
	}
	if v, ok := sel.MatchLabels["kubernetes.io/metadata.name"]; ok && v != ns {
		return true
	}
	return false
}

func hasSkipLabel(sel *metav1.LabelSelector) bool {
	if sel == nil {
		return false
	}
	for _, e := range sel.MatchExpressions {
		if e.Key == "eks.amazonaws.com/skip-pod-identity-webhook" && e.Operator == "DoesNotExist" {
			return true
		}
	}
	return false
}

// matchesSelector evaluates an equality-based label selector (k=v, k==v, k!=v, k, !k).
func matchesSelector(sel string, labels map[string]string) bool {
	if strings.TrimSpace(sel) == "" {
		return false
	}
	for _, term := range strings.Split(sel, ",") {
		term = strings.TrimSpace(term)
		switch {
		case strings.Contains(term, "!="):
			kv := strings.SplitN(term, "!=", 2)
			if labels[strings.TrimSpace(kv[0])] == strings.TrimSpace(kv[1]) {
				return false
			}
		case strings.Contains(term, "="):
			kv := strings.SplitN(strings.Replace(term, "==", "=", 1), "=", 2)
			if v, ok := labels[strings.TrimSpace(kv[0])]; !ok || v != strings.TrimSpace(kv[1]) {
				return false
			}
		case strings.HasPrefix(term, "!"):
			if _, ok := labels[strings.TrimPrefix(term, "!")]; ok {
				return false
			}
		default:
			if _, ok := labels[term]; !ok {
				return false
			}
		}
	}
	return true
}

func subset(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// ---- same ---------------------------------------------------------------------------

func runSame(args []string) ([]string, error) {
	if len(args) != 2 {
		return nil, errors.New("same: want two files")
	}
	a, pa, err := readDocs(args[0])
	if err != nil {
		return nil, err
	}
	b, pb, err := readDocs(args[1])
	if err != nil {
		return nil, err
	}
	problems := append(pa, pb...)
	bad := func(format string, x ...any) { problems = append(problems, fmt.Sprintf(format, x...)) }
	ids := func(docs []*doc) []string {
		var out []string
		for _, d := range docs {
			if d.kind != "Namespace" {
				out = append(out, d.kind+" "+d.namespace+"/"+d.name)
			}
		}
		sort.Strings(out)
		return out
	}
	if ia, ib := ids(a), ids(b); !reflect.DeepEqual(ia, ib) {
		bad("%s and %s hold different objects:\n  %s\n  %s", args[0], args[1], strings.Join(ia, ", "), strings.Join(ib, ", "))
	}
	depA, depB := find[*appsv1.Deployment](a), find[*appsv1.Deployment](b)
	if len(depA) == 1 && len(depB) == 1 {
		sa, sb := depA[0].obj.(*appsv1.Deployment).Spec, depB[0].obj.(*appsv1.Deployment).Spec
		ca, cb := sa.Template.Spec.Containers[0], sb.Template.Spec.Containers[0]
		argsA, argsB := append([]string(nil), ca.Args...), append([]string(nil), cb.Args...)
		sort.Strings(argsA)
		sort.Strings(argsB)
		compare := map[string][2]any{
			"args":                              {argsA, argsB},
			"replicas":                          {sa.Replicas, sb.Replicas},
			"strategy":                          {sa.Strategy, sb.Strategy},
			"env":                               {ca.Env, cb.Env},
			"ports":                             {ca.Ports, cb.Ports},
			"readinessProbe":                    {ca.ReadinessProbe, cb.ReadinessProbe},
			"livenessProbe":                     {ca.LivenessProbe, cb.LivenessProbe},
			"startupProbe":                      {ca.StartupProbe, cb.StartupProbe},
			"resources":                         {ca.Resources, cb.Resources},
			"securityContext":                   {ca.SecurityContext, cb.SecurityContext},
			"pod securityContext":               {sa.Template.Spec.SecurityContext, sb.Template.Spec.SecurityContext},
			"terminationGracePeriodSeconds":     {sa.Template.Spec.TerminationGracePeriodSeconds, sb.Template.Spec.TerminationGracePeriodSeconds},
			"priorityClassName":                 {sa.Template.Spec.PriorityClassName, sb.Template.Spec.PriorityClassName},
			"enableServiceLinks":                {sa.Template.Spec.EnableServiceLinks, sb.Template.Spec.EnableServiceLinks},
			"nodeSelector":                      {sa.Template.Spec.NodeSelector, sb.Template.Spec.NodeSelector},
			"volumeMounts":                      {ca.VolumeMounts, cb.VolumeMounts},
			"volumes":                           {sa.Template.Spec.Volumes, sb.Template.Spec.Volumes},
			"topologySpreadConstraints (count)": {len(sa.Template.Spec.TopologySpreadConstraints), len(sb.Template.Spec.TopologySpreadConstraints)},
		}
		for _, k := range slices.Sorted(maps.Keys(compare)) {
			if v := compare[k]; !reflect.DeepEqual(v[0], v[1]) {
				bad("Deployment %s differs:\n  %s: %s\n  %s: %s", k, args[0], js(v[0]), args[1], js(v[1]))
			}
		}
	}
	wa, wb := find[*admissionregistrationv1.MutatingWebhookConfiguration](a), find[*admissionregistrationv1.MutatingWebhookConfiguration](b)
	if len(wa) == 1 && len(wb) == 1 {
		ha, hb := wa[0].obj.(*admissionregistrationv1.MutatingWebhookConfiguration), wb[0].obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
		if len(ha.Webhooks) != len(hb.Webhooks) {
			bad("MutatingWebhookConfiguration: %d webhooks vs %d", len(ha.Webhooks), len(hb.Webhooks))
		} else {
			for i := range ha.Webhooks {
				x, y := ha.Webhooks[i], hb.Webhooks[i]
				x.ClientConfig.CABundle, y.ClientConfig.CABundle = nil, nil
				if !reflect.DeepEqual(x, y) {
					bad("webhook %d differs:\n  %s: %s\n  %s: %s", i, args[0], js(x), args[1], js(y))
				}
			}
		}
		if ha.Annotations["cert-manager.io/inject-ca-from"] != hb.Annotations["cert-manager.io/inject-ca-from"] {
			bad("cert-manager.io/inject-ca-from differs")
		}
	}
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, x := range a {
			for _, y := range b {
				if x.kind == kind && y.kind == kind && x.name == y.name && x.namespace == y.namespace {
					var rx, ry []rbacv1.PolicyRule
					if kind == "Role" {
						rx, ry = x.obj.(*rbacv1.Role).Rules, y.obj.(*rbacv1.Role).Rules
					} else {
						rx, ry = x.obj.(*rbacv1.ClusterRole).Rules, y.obj.(*rbacv1.ClusterRole).Rules
					}
					if !reflect.DeepEqual(rx, ry) {
						bad("%s %s rules differ:\n  %s\n  %s", kind, x.name, js(rx), js(ry))
					}
				}
			}
		}
	}
	return problems, nil
}

func js(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n    ")
}

// ---- values -------------------------------------------------------------------------

func runValues(args []string) ([]string, error) {
	if len(args) != 2 && len(args) != 3 {
		return nil, errors.New("values: want values.yaml, flag-defaults.yaml and optionally _helpers.tpl")
	}
	var values struct {
		Flags map[string]map[string]any `json:"flags"`
	}
	var defaults map[string]any
	for i, target := range []any{&values, &defaults} {
		data, err := os.ReadFile(args[i])
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(data, target); err != nil {
			return nil, fmt.Errorf("%s: %w", args[i], err)
		}
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	// The template's always-passed list must be this one.
	if len(args) == 3 {
		data, err := os.ReadFile(args[2])
		if err != nil {
			return nil, err
		}
		m := regexp.MustCompile(`\$always := list ((?:"[a-z-]+" ?)+)`).FindSubmatch(data)
		if m == nil {
			bad("%s: no `$always := list ...` found", args[2])
		} else {
			var got []string
			for _, q := range regexp.MustCompile(`"([a-z-]+)"`).FindAllSubmatch(m[1], -1) {
				got = append(got, string(q[1]))
			}
			want := append([]string(nil), alwaysPassed...)
			sort.Strings(got)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				bad("%s: $always is %v, manifestcheck's alwaysPassed is %v: keep them equal", args[2], got, want)
			}
		}
	}
	fs := webhookFlagSet()

	// flag-defaults.yaml: exactly the binary's flags and defaults.
	for name, v := range defaults {
		f := fs.Lookup(name)
		if f == nil {
			bad("%s: %s: not a flag of the webhook", args[1], name)
			continue
		}
		if got, want := valueString(v), normalise(f); got != want {
			bad("%s: %s: %s, but the binary's default is %s", args[1], name, got, want)
		}
	}

	// values.yaml: one value per flag, equal to the default unless always passed.
	where := map[string]string{}
	for group, flags := range values.Flags {
		for name, v := range flags {
			if prev, dup := where[name]; dup {
				bad("%s: flags.%s.%s: also under flags.%s", args[0], group, name, prev)
			}
			where[name] = group
			f := fs.Lookup(name)
			if f == nil {
				bad("%s: flags.%s.%s: not a flag of the webhook", args[0], group, name)
				continue
			}
			if contains(alwaysPassed, name) {
				continue
			}
			if got, want := valueString(v), normalise(f); got != want {
				bad("%s: flags.%s.%s: %s, but the binary's default is %s; only the always-passed flags (%s) may differ",
					args[0], group, name, got, want, strings.Join(alwaysPassed, ", "))
			} else if d, ok := defaults[name]; ok && fmt.Sprint(d) != fmt.Sprint(v) {
				// The chart compares values with flag-defaults.yaml as strings: write them alike.
				bad("%s: flags.%s.%s: write %v as in flag-defaults.yaml (%v), or it is passed needlessly", args[0], group, name, v, d)
			}
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if _, skip := notValues[f.Name]; skip {
			return
		}
		if _, ok := where[f.Name]; !ok {
			bad("%s: no value for --%s (add it under flags.<group>)", args[0], f.Name)
		}
		if _, ok := defaults[f.Name]; !ok {
			bad("%s: --%s is missing", args[1], f.Name)
		}
	})
	sort.Strings(problems)
	return problems, nil
}

// normalise is a flag's default as valueString writes values.
func normalise(f *pflag.Flag) string {
	if f.Value.Type() == "stringArray" {
		return "[]"
	}
	return valueString(f.DefValue)
}

func valueString(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = fmt.Sprint(p)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case string:
		// Durations: compare normalised (60s == 1m0s).
		if d, err := time.ParseDuration(x); err == nil {
			return d.String()
		}
		return x
	default:
		return fmt.Sprint(x)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
