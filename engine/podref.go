package engine

import (
	"encoding/json"
	"fmt"
)

// PodRef is what the webhook reads of a pod before evaluating it: where its
// ServiceAccount is.
type PodRef struct {
	Namespace          string // metadata.namespace; often empty on CREATE
	ServiceAccountName string // spec.serviceAccountName
}

// ReadPodRef reads a pod's namespace and ServiceAccount name from its JSON without
// decoding the rest: the scanner skips the containers, which are most of the bytes.
// object must be valid JSON (an AdmissionReview decode has checked it). Keys match
// exactly, as in the API server's decoder, and a repeated key's last value counts, as
// in encoding/json; a value of the wrong type is an error, a missing or null one "".
func ReadPodRef(object []byte) (PodRef, error) {
	metadata, spec, err := lastFields(object, "metadata", "spec")
	if err != nil {
		return PodRef{}, err
	}
	var ref PodRef
	if ref.Namespace, err = stringField(metadata, "metadata", "namespace"); err != nil {
		return PodRef{}, err
	}
	if ref.ServiceAccountName, err = stringField(spec, "spec", "serviceAccountName"); err != nil {
		return PodRef{}, err
	}
	return ref, nil
}

// lastFields returns the last values of two keys of a JSON object (nil when absent).
func lastFields(object []byte, a, b string) (va, vb json.RawMessage, err error) {
	err = forEachField(object, func(key string, v json.RawMessage) {
		switch key {
		case a:
			va = v
		case b:
			vb = v
		}
	})
	return va, vb, err
}

// stringField reads the string field key of the object parent (named name), "" when
// parent or the field is absent or null.
func stringField(parent json.RawMessage, name, key string) (string, error) {
	if parent == nil || isJSONNull(parent) {
		return "", nil
	}
	if !isJSONObject(parent) {
		return "", fmt.Errorf("%s: must be an object", name)
	}
	v, _, err := lastFields(parent, key, "")
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if v == nil {
		return "", nil
	}
	s, err := jsonStringOrNull(v)
	if err != nil {
		return "", fmt.Errorf("%s.%s: %w", name, key, err)
	}
	return s, nil
}

func isJSONObject(v []byte) bool { return len(v) > 0 && v[0] == '{' }

func isJSONNull(v []byte) bool { return string(v) == "null" }

// jsonStringOrNull decodes a JSON string ("" for null).
func jsonStringOrNull(v []byte) (string, error) {
	switch {
	case isJSONNull(v):
		return "", nil
	case len(v) > 0 && v[0] == '"':
		s, err := objectKey(v)
		if err != nil {
			return "", err
		}
		return string([]byte(s)), nil // objectKey may alias v; the caller keeps s
	}
	return "", fmt.Errorf("must be a string")
}
