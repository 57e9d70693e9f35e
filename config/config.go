// Package config defines the webhook's flags (every flag of the upstream Amazon EKS Pod
// Identity Webhook, with the same name, default and meaning, plus this project's own)
// and layers them with koanf: built-in defaults, then a config file, then environment
// variables, then flags. The mutation settings reach policies as params.
package config

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// EnvPrefix starts the environment variables that set options: PIW_AWS_DEFAULT_REGION
// sets --aws-default-region. (Not POD_IDENTITY_WEBHOOK_: Kubernetes injects
// POD_IDENTITY_WEBHOOK_PORT and friends for a Service of that name.)
const EnvPrefix = "PIW_"

// Config is the whole configuration. Each field's koanf tag is its flag name, which is
// also its key in a config file.
type Config struct {
	// Mutation settings: they feed the policy params (see Params).
	AnnotationPrefix                    string `koanf:"annotation-prefix"`
	TokenAudience                       string `koanf:"token-audience"`
	TokenMountPath                      string `koanf:"token-mount-path"`
	TokenExpiration                     int64  `koanf:"token-expiration"`
	AWSDefaultRegion                    string `koanf:"aws-default-region"`
	STSRegionalEndpoint                 bool   `koanf:"sts-regional-endpoint"`
	ComposeRoleARN                      bool   `koanf:"compose-role-arn"`
	AWSAccountID                        string `koanf:"aws-account-id"`
	AWSPartition                        string `koanf:"aws-partition"`
	ContainerCredentialsAudience        string `koanf:"container-credentials-audience"`
	ContainerCredentialsTokenMountPath  string `koanf:"container-credentials-token-mount-path"`
	ContainerCredentialsTokenVolumeName string `koanf:"container-credentials-token-volume-name"`
	ContainerCredentialsTokenPath       string `koanf:"container-credentials-token-path"`
	ContainerCredentialsFullURI         string `koanf:"container-credentials-full-uri"`

	// Sources.
	WatchConfigMap                  bool          `koanf:"watch-config-map"`
	WatchContainerCredentialsConfig string        `koanf:"watch-container-credentials-config"`
	WatchNamespaces                 bool          `koanf:"watch-namespaces"`
	Namespace                       string        `koanf:"namespace"`
	Kubeconfig                      string        `koanf:"kubeconfig"`
	KubeAPI                         string        `koanf:"kube-api"`
	ServiceAccountLookupGracePeriod time.Duration `koanf:"service-account-lookup-grace-period"`
	ResyncPeriod                    time.Duration `koanf:"resync-period"`

	// Policy.
	Bundles                 []string      `koanf:"bundle"`
	NoDefaultBundle         bool          `koanf:"no-default-bundle"`
	BundleConfigMapSelector string        `koanf:"bundle-configmap-selector"`
	AllowConfigMapGrants    bool          `koanf:"allow-configmap-bundle-grants"`
	PolicyTimeout           time.Duration `koanf:"policy-timeout"`
	CELCostLimit            uint64        `koanf:"cel-cost-limit"`
	PolicyEvaluator         string        `koanf:"policy-evaluator"`

	// Server.
	Port                    int           `koanf:"port"`
	MetricsPort             int           `koanf:"metrics-port"`
	TLSCert                 string        `koanf:"tls-cert"`
	TLSKey                  string        `koanf:"tls-key"`
	TLSCipherSuites         string        `koanf:"tls-cipher-suites"`
	TLSMinVersion           string        `koanf:"tls-min-version"`
	InCluster               bool          `koanf:"in-cluster"`
	ServiceName             string        `koanf:"service-name"`
	TLSSecret               string        `koanf:"tls-secret"`
	EnableDebuggingHandlers bool          `koanf:"enable-debugging-handlers"`
	ShutdownGracePeriod     time.Duration `koanf:"shutdown-grace-period"`
	ShutdownDelay           time.Duration `koanf:"shutdown-delay"`
	Version                 bool          `koanf:"version"`
}

// Defaults are the built-in values: upstream's for upstream flags.
func Defaults() Config {
	return Config{
		AnnotationPrefix:                    "eks.amazonaws.com",
		TokenAudience:                       "sts.amazonaws.com",
		TokenMountPath:                      "/var/run/secrets/eks.amazonaws.com/serviceaccount",
		TokenExpiration:                     86400,
		ContainerCredentialsAudience:        "pods.eks.amazonaws.com",
		ContainerCredentialsTokenMountPath:  "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
		ContainerCredentialsTokenVolumeName: "eks-pod-identity-token",
		ContainerCredentialsTokenPath:       "eks-pod-identity-token",
		ContainerCredentialsFullURI:         "http://169.254.170.23/v1/credentials",
		Namespace:                           "eks",
		ResyncPeriod:                        60 * time.Second,
		BundleConfigMapSelector:             "pod-identity-webhook.io/bundle=true",
		PolicyTimeout:                       time.Second,
		CELCostLimit:                        1_000_000,
		PolicyEvaluator:                     string(engine.EvaluatorIR),
		Port:                                443,
		MetricsPort:                         9999,
		TLSCert:                             "/etc/webhook/certs/tls.crt",
		TLSKey:                              "/etc/webhook/certs/tls.key",
		InCluster:                           true,
		ServiceName:                         "pod-identity-webhook",
		TLSSecret:                           "pod-identity-webhook",
		ShutdownGracePeriod:                 10 * time.Second,
	}
}

// AddMutationFlags adds the flags that change what a pod gets, shared by serve and eval.
func AddMutationFlags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.String("annotation-prefix", d.AnnotationPrefix, "Prefix of every ServiceAccount and pod annotation the policies read (<prefix>/role-arn, ...)")
	fs.String("token-audience", d.TokenAudience, "Default audience of the projected token in web-identity mode")
	fs.String("token-mount-path", d.TokenMountPath, "Where the web-identity token volume is mounted")
	fs.Int64("token-expiration", d.TokenExpiration, "Default token expirationSeconds (raised to 600 if lower)")
	fs.String("aws-default-region", d.AWSDefaultRegion, "If set, AWS_DEFAULT_REGION and AWS_REGION are injected with this value")
	fs.Bool("sts-regional-endpoint", d.STSRegionalEndpoint, "Inject AWS_STS_REGIONAL_ENDPOINTS=regional unless the ServiceAccount annotation says otherwise")
	fs.Bool("compose-role-arn", d.ComposeRoleARN, "Build a full role ARN from a role-arn annotation that lacks 'arn:' (partition and account from --aws-partition/--aws-account-id, else EC2 instance metadata)")
	fs.String("aws-account-id", d.AWSAccountID, "Account for --compose-role-arn (instead of EC2 instance metadata)")
	fs.String("aws-partition", d.AWSPartition, "Partition for --compose-role-arn, e.g. aws, aws-cn (instead of EC2 instance metadata)")
	fs.String("container-credentials-audience", d.ContainerCredentialsAudience, "Token audience in container-credentials (EKS Pod Identity) mode")
	fs.String("container-credentials-token-mount-path", d.ContainerCredentialsTokenMountPath, "Token mount path in container-credentials mode")
	fs.String("container-credentials-token-volume-name", d.ContainerCredentialsTokenVolumeName, "Token volume name in container-credentials mode")
	fs.String("container-credentials-token-path", d.ContainerCredentialsTokenPath, "Token file name inside the volume in container-credentials mode")
	fs.String("container-credentials-full-uri", d.ContainerCredentialsFullURI, "Value of AWS_CONTAINER_CREDENTIALS_FULL_URI in container-credentials mode")
	fs.String("watch-container-credentials-config", d.WatchContainerCredentialsConfig, "Container-credentials identities file ({\"identities\":[{\"namespace\",\"serviceAccount\"}]}); empty disables the mode")
}

// AddPolicyFlags adds the flags that choose and bound the policy bundles.
func AddPolicyFlags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.StringArray("bundle", nil, "A policy bundle directory to run after the default bundle (repeatable, in order)")
	fs.Bool("no-default-bundle", false, "Leave the embedded default bundle out")
	fs.Duration("policy-timeout", d.PolicyTimeout, "Per-request deadline for evaluating all policies")
	fs.Uint64("cel-cost-limit", d.CELCostLimit, "Cost limit of one CEL match condition")
	fs.String("policy-evaluator", d.PolicyEvaluator, "What runs the policies' Rego rules: ir (their compiled plan; a rule it cannot run falls back to topdown) or topdown (OPA's interpreter for all)")
	fs.String("config", "", "A YAML config file whose keys are flag names; flags and PIW_* environment variables override it")
}

// AddClusterFlags adds the flags that say which cluster to read.
func AddClusterFlags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.String("kubeconfig", d.Kubeconfig, "Kubeconfig path; with --kube-api empty too, the in-cluster config is used")
	fs.String("kube-api", d.KubeAPI, "API server URL override")
	fs.String("namespace", d.Namespace, "Namespace of the pod-identity-webhook ConfigMap (--watch-config-map) and of bundle ConfigMaps")
	fs.Bool("watch-config-map", d.WatchConfigMap, "Read ServiceAccount-to-role mappings from the pod-identity-webhook ConfigMap (kOps format)")
	fs.Bool("watch-namespaces", d.WatchNamespaces, "Give policies the pod's Namespace (namespaceObject); needs list/watch on namespaces")
}

// AddServeFlags adds the server's own flags.
func AddServeFlags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.Int("port", d.Port, "TLS port for /mutate, /healthz and /readyz")
	fs.Int("metrics-port", d.MetricsPort, "Plain-HTTP port for /metrics and the debug cache routes")
	fs.String("tls-cert", d.TLSCert, "Serving certificate file (reloaded when it changes)")
	fs.String("tls-key", d.TLSKey, "Serving key file (reloaded when it changes)")
	fs.String("tls-cipher-suites", d.TLSCipherSuites, "Comma-separated Go TLS cipher suite names; empty means Go's defaults")
	fs.String("tls-min-version", d.TLSMinVersion, "Minimum TLS version: 1.0, 1.1, 1.2, 1.3 (or VersionTLS10..13); empty means Go's default")
	fs.Bool("in-cluster", d.InCluster, "Upstream's CSR-based certificate mode, which no longer works; must be set to false (use --tls-cert/--tls-key, e.g. from cert-manager)")
	fs.String("service-name", d.ServiceName, "Service name (upstream CSR mode only; accepted for compatibility)")
	fs.String("tls-secret", d.TLSSecret, "Secret for the CSR-issued certificate (upstream CSR mode only; accepted for compatibility)")
	fs.Bool("enable-debugging-handlers", d.EnableDebuggingHandlers, "Serve the upstream debug routes (/debug/alpha/...)")
	fs.Duration("service-account-lookup-grace-period", d.ServiceAccountLookupGracePeriod, "How long a request waits for a ServiceAccount missing from the cache while it is fetched from the API server (0: no wait, no fetch)")
	fs.Duration("resync-period", d.ResyncPeriod, "Resync period of the ServiceAccount and ConfigMap informers")
	fs.String("bundle-configmap-selector", d.BundleConfigMapSelector, "Label selector of the policy bundle ConfigMaps in --namespace; empty disables them")
	fs.Bool("allow-configmap-bundle-grants", d.AllowConfigMapGrants, "Let bundle ConfigMaps use grants (changes beyond the default guardrails); off, whoever can write a ConfigMap in --namespace cannot grant themselves e.g. image or hostPath changes")
	fs.Duration("shutdown-grace-period", d.ShutdownGracePeriod, "How long in-flight requests may take to finish on shutdown")
	fs.Duration("shutdown-delay", d.ShutdownDelay, "How long to keep serving after SIGTERM before shutting down, so that endpoints are updated first")
	fs.Bool("version", false, "Print the version and exit")
}

// Load layers defaults, the config file named by the --config flag (if fs has it and
// it is set), PIW_* environment variables and the flags that were set, in that order.
func Load(fs *pflag.FlagSet, environ []string) (*Config, error) {
	k := koanf.New(".")
	known := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
	delete(known, "config")

	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		path := f.Value.String()
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, unwrapPathError(err))
		}
		for _, key := range fk.Keys() {
			top := strings.SplitN(key, ".", 2)[0]
			if !known[top] {
				return nil, fmt.Errorf("config file %s: %s: unknown option (options are flag names, e.g. aws-default-region)", path, top)
			}
		}
		if err := k.Merge(fk); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	}

	var unknownEnv []string
	ek := koanf.New(".")
	err := ek.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(key, value string) (string, any) {
			name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(key, EnvPrefix)), "_", "-")
			if !known[name] {
				unknownEnv = append(unknownEnv, key)
				return "", nil
			}
			if name == "bundle" {
				return name, strings.Split(value, ",")
			}
			return name, value
		},
	}), nil)
	if err != nil {
		return nil, fmt.Errorf("environment: %w", err)
	}
	if len(unknownEnv) > 0 {
		sort.Strings(unknownEnv)
		return nil, fmt.Errorf("environment: %s: unknown option (PIW_ variables name flags, e.g. PIW_AWS_DEFAULT_REGION)", strings.Join(unknownEnv, ", "))
	}
	if err := k.Merge(ek); err != nil {
		return nil, err
	}
	// posflag sets changed flags over what is there, and unchanged flags only where
	// nothing is there yet: so an unchanged flag supplies its default, nothing more.
	if err := k.Load(posflag.Provider(fs, ".", k), nil); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	cfg := Defaults()
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if len(cfg.Bundles) == 0 {
		cfg.Bundles = nil
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) validate() error {
	if c.ServiceAccountLookupGracePeriod < 0 {
		return fmt.Errorf("service-account-lookup-grace-period: must not be negative, got %s", c.ServiceAccountLookupGracePeriod)
	}
	if c.PolicyTimeout <= 0 {
		return fmt.Errorf("policy-timeout: must be positive, got %s", c.PolicyTimeout)
	}
	if !slices.Contains(engine.Evaluators, engine.Evaluator(c.PolicyEvaluator)) {
		return fmt.Errorf("policy-evaluator: must be one of %v, got %q", engine.Evaluators, c.PolicyEvaluator)
	}
	return nil
}

// EngineOptions are the policy engine options the configuration asks for.
func (c *Config) EngineOptions() engine.Options {
	return engine.Options{Params: c.Params(), EvalTimeout: c.PolicyTimeout, CELCostLimit: c.CELCostLimit,
		Evaluator: engine.Evaluator(c.PolicyEvaluator)}
}

// Params returns the mutation settings as policy params, named as docs/policies.md
// lists them.
func (c *Config) Params() map[string]any {
	return map[string]any{
		"annotationPrefix":                    c.AnnotationPrefix,
		"tokenAudience":                       c.TokenAudience,
		"tokenMountPath":                      c.TokenMountPath,
		"tokenExpiration":                     c.TokenExpiration,
		"awsDefaultRegion":                    c.AWSDefaultRegion,
		"stsRegionalEndpoint":                 c.STSRegionalEndpoint,
		"composeRoleArn":                      c.ComposeRoleARN,
		"awsAccountID":                        c.AWSAccountID,
		"awsPartition":                        c.AWSPartition,
		"containerCredentialsAudience":        c.ContainerCredentialsAudience,
		"containerCredentialsTokenMountPath":  c.ContainerCredentialsTokenMountPath,
		"containerCredentialsTokenVolumeName": c.ContainerCredentialsTokenVolumeName,
		"containerCredentialsTokenPath":       c.ContainerCredentialsTokenPath,
		"containerCredentialsFullURI":         c.ContainerCredentialsFullURI,
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
