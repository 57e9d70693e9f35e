package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/pod-identity-webhook/pod-identity-webhook/admission"
	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
	"github.com/pod-identity-webhook/pod-identity-webhook/sources"
)

// readManifest reads a YAML or JSON file ("-" is stdin) and returns it as JSON.
func readManifest(path string, stdin io.Reader) ([]byte, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: cannot read: %v", path, pe.Err)
		}
		return nil, fmt.Errorf("%s: cannot read: %v", path, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: empty file", path)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not YAML or JSON: %s", path, strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
	}
	if !bytes.HasPrefix(bytes.TrimSpace(js), []byte("{")) {
		return nil, fmt.Errorf("%s: expected a Kubernetes object, got a YAML scalar or list", path)
	}
	return js, nil
}

// typeMeta is enough of an object to tell what it is.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// decodeTyped decodes js into out, turning type errors into "field: expected X, got Y".
func decodeTyped(path string, js []byte, out any) error {
	if err := json.Unmarshal(js, out); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s: %s: expected %s, got a JSON %s", path, te.Field, friendlyType(te.Type.String()), te.Value)
		}
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

func friendlyType(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a map"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"), strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "a boolean"
	}
	return "an object"
}

// podInput is the pod eval evaluates, with the request attributes around it.
type podInput struct {
	attrs  engine.Attributes
	object []byte
}

// readPod reads a Pod or an AdmissionReview. The namespace is the review's, else the
// pod's, else "default". Like the API server's ServiceAccount admission plugin (which
// runs before webhooks), an empty spec.serviceAccountName becomes "default".
func readPod(path string, stdin io.Reader) (*podInput, error) {
	js, err := readManifest(path, stdin)
	if err != nil {
		return nil, err
	}
	var tm typeMeta
	_ = json.Unmarshal(js, &tm)
	in := &podInput{}
	switch tm.Kind {
	case "AdmissionReview":
		review, err := admission.DecodeReview(js)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if review.Request == nil {
			return nil, fmt.Errorf("%s: request: missing (an AdmissionReview to evaluate needs a request)", path)
		}
		if len(review.Request.Object.Raw) == 0 {
			return nil, fmt.Errorf("%s: request.object: missing", path)
		}
		in.attrs = admission.Attributes(review.Request)
		js = review.Request.Object.Raw
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, fmt.Errorf("%s: request.object: %v", path, err)
		}
		if tm.Kind != "" && tm.Kind != "Pod" {
			return nil, fmt.Errorf("%s: request.object.kind: expected Pod, got %q", path, tm.Kind)
		}
	case "Pod", "":
		in.attrs = engine.PodCreate("", "")
	default:
		return nil, fmt.Errorf("%s: kind: expected Pod or AdmissionReview, got %q", path, tm.Kind)
	}
	var pod corev1.Pod
	if err := decodeTyped(path, js, &pod); err != nil {
		return nil, err
	}
	if len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("%s: spec.containers: a pod needs at least one container", path)
	}
	for i, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == "" {
			return nil, fmt.Errorf("%s: container %d: name: must not be empty", path, i)
		}
	}
	doc := map[string]any{}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if in.attrs.Namespace == "" {
		in.attrs.Namespace = pod.Namespace
	}
	if in.attrs.Namespace == "" {
		in.attrs.Namespace = "default"
	}
	if in.attrs.Name == "" {
		in.attrs.Name = pod.Name
	}
	if pod.Spec.ServiceAccountName == "" {
		spec, _ := doc["spec"].(map[string]any)
		if spec == nil {
			spec = map[string]any{}
			doc["spec"] = spec
		}
		spec["serviceAccountName"] = "default"
	}
	in.object, err = json.Marshal(doc)
	return in, err
}

// readServiceAccount reads a ServiceAccount manifest and keeps what policies may read.
func readServiceAccount(path string, stdin io.Reader, annotationPrefix string) (*engine.ServiceAccount, error) {
	js, err := readManifest(path, stdin)
	if err != nil {
		return nil, err
	}
	var sa corev1.ServiceAccount
	if err := decodeTyped(path, js, &sa); err != nil {
		return nil, err
	}
	if sa.Kind != "ServiceAccount" {
		return nil, fmt.Errorf("%s: kind: expected ServiceAccount, got %q", path, sa.Kind)
	}
	if sa.Name == "" {
		return nil, fmt.Errorf("%s: metadata.name: must not be empty", path)
	}
	return sources.StripServiceAccount(&sa, annotationPrefix), nil
}

// readNamespace reads a Namespace manifest.
func readNamespace(path string, stdin io.Reader) (*engine.NamespaceObject, error) {
	js, err := readManifest(path, stdin)
	if err != nil {
		return nil, err
	}
	var ns corev1.Namespace
	if err := decodeTyped(path, js, &ns); err != nil {
		return nil, err
	}
	if ns.Kind != "Namespace" || ns.Name == "" {
		return nil, fmt.Errorf("%s: expected a Namespace with a metadata.name, got kind %q", path, ns.Kind)
	}
	return sources.NamespaceObject(&ns), nil
}

// readRoleMappingConfigMap reads a kOps pod-identity-webhook ConfigMap manifest.
// Every problem, including a skipped key, is an error here: eval is where an operator
// checks a ConfigMap before applying it.
func readRoleMappingConfigMap(path string, stdin io.Reader) (sources.RoleMappings, error) {
	js, err := readManifest(path, stdin)
	if err != nil {
		return nil, err
	}
	var cm corev1.ConfigMap
	if err := decodeTyped(path, js, &cm); err != nil {
		return nil, err
	}
	if cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("%s: kind: expected ConfigMap, got %q", path, cm.Kind)
	}
	config, ok := cm.Data[sources.RoleMappingKey]
	if !ok {
		return nil, fmt.Errorf("%s: data.%s: missing (the kOps format keeps its mappings under data.config)", path, sources.RoleMappingKey)
	}
	m, problems, err := sources.ParseRoleMappings(config)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: data.%s: %v", path, sources.RoleMappingKey, problems[0])
	}
	return m, nil
}

// readIdentities reads a container-credentials identities file.
func readIdentities(path string) (sources.Identities, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: cannot read: %v", path, pe.Err)
		}
		return nil, err
	}
	ids, err := sources.ParseIdentities(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return ids, nil
}
