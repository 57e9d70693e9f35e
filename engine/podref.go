package engine

import (
	"encoding/json"
	"fmt"
	"strings"
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
	return namedString(v, name+"."+key)
}

func isJSONObject(v []byte) bool { return len(v) > 0 && v[0] == '{' }

func isJSONNull(v []byte) bool { return string(v) == "null" }

// jsonStringOrNull decodes a JSON string ("" for null).
func jsonStringOrNull(v []byte) (string, error) {
	s, err := jsonStringAlias(v)
	return strings.Clone(s), err // jsonStringAlias may alias v; the caller keeps s
}

// jsonStringAlias is jsonStringOrNull for a string used only while v is: the usual
// string (plain ASCII, no escapes) aliases v's bytes instead of being copied.
func jsonStringAlias(v []byte) (string, error) {
	switch {
	case isJSONNull(v):
		return "", nil
	case len(v) > 0 && v[0] == '"':
		return objectKey(v)
	}
	return "", fmt.Errorf("must be a string")
}

// PodScan is a pod cut along a program's projection (see Program.Scan): what
// Evaluate would otherwise scan the pod again for.
type PodScan struct {
	Ref    PodRef
	object []byte // what was scanned
	proj   *projection
	leaves []leaf
}

// of says the scan is of object, cut by projection proj.
func (s *PodScan) of(object []byte, proj *projection) bool {
	return s != nil && s.proj == proj && len(s.object) == len(object) &&
		(len(object) == 0 || &s.object[0] == &object[0])
}

// Scan reads the pod's namespace and ServiceAccount name and cuts it along the
// program's projection, in one pass over its bytes. Give the scan to Evaluate in
// Request.Scan (with the same Object) and it does not cut the pod again. object must
// be valid JSON (an AdmissionReview decode has checked it): unlike Evaluate alone,
// Scan does not check the syntax of the parts it skips. Errors are *InputError.
func (p *Program) Scan(object []byte) (*PodScan, error) {
	leaves, err := splitTrusted(object, p.proj)
	if err != nil {
		return nil, &InputError{Field: "object", Reason: err.Error()}
	}
	ref, err := refFromLeaves(leaves)
	if err != nil {
		return nil, &InputError{Field: "object", Reason: err.Error()}
	}
	return &PodScan{Ref: ref, object: object, proj: p.proj, leaves: leaves}, nil
}

// refFromLeaves reads the PodRef from a projection's leaves, which always hold
// metadata.namespace and spec.serviceAccountName (mutatorPaths), or a whole subtree
// above them.
func refFromLeaves(leaves []leaf) (PodRef, error) {
	var ref PodRef
	for _, l := range leaves {
		var err error
		switch {
		case len(l.path) == 0:
			return ReadPodRef(l.raw)
		case len(l.path) == 1 && l.path[0] == "metadata":
			ref.Namespace, err = stringField(l.raw, "metadata", "namespace")
		case len(l.path) == 1 && l.path[0] == "spec":
			ref.ServiceAccountName, err = stringField(l.raw, "spec", "serviceAccountName")
		case len(l.path) == 2 && l.path[0] == "metadata" && l.path[1] == "namespace":
			ref.Namespace, err = namedString(l.raw, "metadata.namespace")
		case len(l.path) == 2 && l.path[0] == "spec" && l.path[1] == "serviceAccountName":
			ref.ServiceAccountName, err = namedString(l.raw, "spec.serviceAccountName")
		}
		if err != nil {
			return PodRef{}, err
		}
	}
	return ref, nil
}

func namedString(v []byte, name string) (string, error) {
	s, err := jsonStringOrNull(v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}
