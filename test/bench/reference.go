// Package bench holds the performance baseline of the webhook: a plain-Go reference
// implementation of the default behaviours (reference.go), the harness that builds the
// real webhook handler exactly as the server does (setup.go), and the benchmarks and
// equivalence tests that compare the two (bench_test.go, equivalence_test.go). Every
// engine figure is reported as a ratio to the reference measured in the same run; see
// ratios.sh.
package bench

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/config"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// Upstream's fixed names (no flag sets them).
const (
	refVolumeName = "aws-iam-token"
	refTokenPath  = "token"
	refMinExpiry  = 600
)

// RefConfig are the flags the reference honours: the web-identity subset of the
// mutation flags.
type RefConfig struct {
	AnnotationPrefix    string
	TokenAudience       string
	TokenMountPath      string
	TokenExpiration     int64
	AWSDefaultRegion    string
	STSRegionalEndpoint bool
}

// RefConfigFrom takes the reference's flags from the webhook's configuration.
func RefConfigFrom(c *config.Config) RefConfig {
	return RefConfig{
		AnnotationPrefix:    c.AnnotationPrefix,
		TokenAudience:       c.TokenAudience,
		TokenMountPath:      c.TokenMountPath,
		TokenExpiration:     c.TokenExpiration,
		AWSDefaultRegion:    c.AWSDefaultRegion,
		STSRegionalEndpoint: c.STSRegionalEndpoint,
	}
}

// Reference is a plain-Go implementation of the default bundle's web-identity
// behaviour (upstream's rules, role from the ServiceAccount annotation; no ConfigMap,
// no container credentials), with the same additive patch shape as the engine:
//
//   - the AdmissionReview is decoded once with encoding/json into admission/v1 types,
//     and the pod once into a typed corev1.Pod;
//   - the rules are upstream's: role-arn, audience, regional STS, token expiration
//     (pod > ServiceAccount > flag, 600 s minimum), skip-containers (one CSV record),
//     the Windows token path, the untouched-container rule, init containers first;
//   - the patch is minimal and additive: the volume (add /spec/volumes/0, or
//     /spec/volumes when absent), then per container `add .../env/-` per variable (or
//     `add .../env` when the container has none) and the mount;
//   - the response AdmissionReview is encoded with encoding/json.
//
// It is an http.Handler (the benchmarks' baseline) and a webhook.Admitter (so the load
// server can serve it behind the real webhook.Server, measured exactly as the engine).
// It is safe for concurrent use.
type Reference struct {
	cfg RefConfig
	// sas are the known ServiceAccounts' annotations by namespace/name; a present
	// entry means found.
	sas map[string]map[string]string
	// Derived once.
	tokenFile        string
	tokenFileWindows string
	flagExpiry       int64
}

// NewReference returns a reference serving the given ServiceAccounts.
func NewReference(cfg RefConfig, sas ...*engine.ServiceAccount) *Reference {
	r := &Reference{cfg: cfg, sas: map[string]map[string]string{}}
	for _, sa := range sas {
		ann := sa.Annotations
		if ann == nil {
			ann = map[string]string{}
		}
		r.sas[sa.Namespace+"/"+sa.Name] = ann
	}
	r.tokenFile = path.Join(cfg.TokenMountPath, refTokenPath)
	r.tokenFileWindows = "C:" + strings.ReplaceAll(r.tokenFile, "/", `\`)
	r.flagExpiry = max(cfg.TokenExpiration, refMinExpiry)
	return r
}

// ServeHTTP answers one AdmissionReview: request bytes in, response bytes out.
func (r *Reference) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "expected application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	patch, err := r.patch(review.Request.Namespace, review.Request.Object.Raw)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if patch != nil {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion = "admission.k8s.io/v1"
	}
	if out.Kind == "" {
		out.Kind = "AdmissionReview"
	}
	b, err := json.Marshal(&out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// Admit is the webhook.Admitter form: the reference's decision behind the real
// webhook handler (which then decodes the review and encodes the response itself).
func (r *Reference) Admit(_ context.Context, attrs engine.Attributes, object []byte) (*admission.Decision, error) {
	patch, err := r.patch(attrs.Namespace, object)
	if err != nil {
		return nil, &engine.InputError{Field: "object", Reason: err.Error()}
	}
	return &admission.Decision{Allowed: true, Patch: patch, Namespace: attrs.Namespace}, nil
}

// patchOp is one RFC 6902 operation; op, path, value is upstream's key order.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// patch decodes the pod and returns the JSON Patch, nil when nothing changes.
func (r *Reference) patch(namespace string, object []byte) ([]byte, error) {
	var pod corev1.Pod
	if err := json.Unmarshal(object, &pod); err != nil {
		return nil, fmt.Errorf("not a pod: %v", err)
	}
	if namespace == "" {
		namespace = pod.Namespace
	}
	ops := r.mutate(namespace, &pod)
	if len(ops) == 0 {
		return nil, nil
	}
	return json.Marshal(ops)
}

// mutate applies upstream's web-identity rules to the pod and returns the operations.
func (r *Reference) mutate(namespace string, pod *corev1.Pod) []patchOp {
	if pod.Spec.ServiceAccountName == "" {
		return nil
	}
	saAnn, found := r.sas[namespace+"/"+pod.Spec.ServiceAccountName]
	if !found {
		return nil
	}
	prefix := r.cfg.AnnotationPrefix + "/"
	roleARN := saAnn[prefix+"role-arn"]
	if roleARN == "" {
		return nil
	}

	audience := r.cfg.TokenAudience
	if a, ok := saAnn[prefix+"audience"]; ok {
		audience = a
	}
	regional := r.cfg.STSRegionalEndpoint
	if v, ok := saAnn[prefix+"sts-regional-endpoints"]; ok {
		if b, err := strconv.ParseBool(v); err == nil {
			regional = b
		}
	}
	expiry := r.flagExpiry
	if v, ok := parseExpiry(saAnn, prefix+"token-expiration"); ok {
		expiry = v
	}
	if v, ok := parseExpiry(pod.Annotations, prefix+"token-expiration"); ok {
		expiry = v
	}
	skip := skipSet(pod.Annotations[prefix+"skip-containers"])
	tokenFile := r.tokenFile
	if pod.Spec.NodeSelector["kubernetes.io/os"] == "windows" || pod.Spec.NodeSelector["beta.kubernetes.io/os"] == "windows" {
		tokenFile = r.tokenFileWindows
	}

	var ops []patchOp
	volumeExists := false
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == refVolumeName {
			volumeExists = true
			break
		}
	}
	if !volumeExists {
		vol := corev1.Volume{Name: refVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: audience, ExpirationSeconds: &expiry, Path: refTokenPath,
			}}},
		}}}
		if pod.Spec.Volumes == nil {
			ops = append(ops, patchOp{Op: "add", Path: "/spec/volumes", Value: []corev1.Volume{vol}})
		} else {
			ops = append(ops, patchOp{Op: "add", Path: "/spec/volumes/0", Value: vol})
		}
	}
	c := containerRules{regional: regional, region: r.cfg.AWSDefaultRegion, roleARN: roleARN, tokenFile: tokenFile,
		mount: corev1.VolumeMount{Name: refVolumeName, ReadOnly: true, MountPath: r.cfg.TokenMountPath}, skip: skip}
	ops = c.apply(ops, "initContainers", pod.Spec.InitContainers)
	ops = c.apply(ops, "containers", pod.Spec.Containers)
	return ops
}

// parseExpiry reads a token-expiration annotation: a base-10 int64, raised to the
// 600 s minimum; anything else is ignored.
func parseExpiry(ann map[string]string, key string) (int64, bool) {
	v, ok := ann[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false
	}
	return max(n, refMinExpiry), true
}

// skipSet reads skip-containers as one CSV record with encoding/csv's defaults (no
// trimming); a parse error skips nothing.
func skipSet(v string) map[string]bool {
	if v == "" {
		return nil
	}
	rec, err := csv.NewReader(strings.NewReader(v)).Read()
	if err != nil {
		return nil
	}
	s := make(map[string]bool, len(rec))
	for _, n := range rec {
		s[n] = true
	}
	return s
}

type containerRules struct {
	regional  bool
	region    string
	roleARN   string
	tokenFile string
	mount     corev1.VolumeMount
	skip      map[string]bool
}

// apply appends the operations of one container list.
func (c *containerRules) apply(ops []patchOp, list string, cs []corev1.Container) []patchOp {
	for i := range cs {
		ct := &cs[i]
		if c.skip[ct.Name] {
			continue
		}
		var hasSTS, hasRegion, hasCred, hasMount bool
		for j := range ct.Env {
			switch ct.Env[j].Name {
			case "AWS_STS_REGIONAL_ENDPOINTS":
				hasSTS = true
			case "AWS_REGION", "AWS_DEFAULT_REGION":
				hasRegion = true
			case "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE":
				hasCred = true
			}
		}
		// The untouched-container rule: all three groups defined, no env and no mount.
		if hasCred && hasRegion && hasSTS {
			continue
		}
		for j := range ct.VolumeMounts {
			if ct.VolumeMounts[j].Name == refVolumeName {
				hasMount = true
				break
			}
		}
		env := make([]corev1.EnvVar, 0, 5)
		if c.regional && !hasSTS {
			env = append(env, corev1.EnvVar{Name: "AWS_STS_REGIONAL_ENDPOINTS", Value: "regional"})
		}
		if c.region != "" && !hasRegion {
			env = append(env, corev1.EnvVar{Name: "AWS_DEFAULT_REGION", Value: c.region}, corev1.EnvVar{Name: "AWS_REGION", Value: c.region})
		}
		if !hasCred {
			env = append(env, corev1.EnvVar{Name: "AWS_ROLE_ARN", Value: c.roleARN}, corev1.EnvVar{Name: "AWS_WEB_IDENTITY_TOKEN_FILE", Value: c.tokenFile})
		}
		base := "/spec/" + list + "/" + strconv.Itoa(i)
		if len(env) > 0 {
			if ct.Env == nil {
				ops = append(ops, patchOp{Op: "add", Path: base + "/env", Value: env})
			} else {
				for _, e := range env {
					ops = append(ops, patchOp{Op: "add", Path: base + "/env/-", Value: e})
				}
			}
		}
		if !hasMount {
			if ct.VolumeMounts == nil {
				ops = append(ops, patchOp{Op: "add", Path: base + "/volumeMounts", Value: []corev1.VolumeMount{c.mount}})
			} else {
				ops = append(ops, patchOp{Op: "add", Path: base + "/volumeMounts/-", Value: c.mount})
			}
		}
	}
	return ops
}
