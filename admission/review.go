package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	gojson "github.com/goccy/go-json"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// Review is a decoded AdmissionReview. Like upstream, it is decoded structurally: the
// v1 and v1beta1 shapes are the same, and apiVersion and kind are echoed back as sent.
type Review struct {
	APIVersion string
	Kind       string
	Request    *admissionv1.AdmissionRequest
}

// DecodeReview decodes an AdmissionReview body. It fails on bodies that are not JSON
// or not an object; a review without a request decodes with Request nil.
func DecodeReview(body []byte) (*Review, error) {
	if len(body) == 0 {
		return nil, errors.New("empty body: expected an AdmissionReview")
	}
	// goccy/go-json: several times faster than encoding/json on this, the largest
	// decode of an admission. The objects (the pod is most of the body) are checked
	// by it but not copied: they are found in the body afterwards and refer to it.
	var ar wireReview
	if err := gojson.Unmarshal(body, &ar); err != nil {
		// An object that is not a JSON object, or a body that is not JSON: decoded
		// again as before, for its error or for an object the engine then refuses.
		return decodeReviewCopying(body)
	}
	review := &Review{APIVersion: ar.APIVersion, Kind: ar.Kind}
	if ar.Request != nil {
		objects, exact, err := engine.FieldValues(body, []string{"request"}, "object", "oldObject")
		if err != nil || !exact {
			// Repeated or case-variant keys, which the API server never sends: leave
			// it to the decoder's own rules.
			return decodeReviewCopying(body)
		}
		review.Request = &ar.Request.AdmissionRequest
		review.Request.Object.Raw = rawObject(objects[0])
		review.Request.OldObject.Raw = rawObject(objects[1])
	}
	return review, nil
}

// decodeReviewCopying is DecodeReview with the objects decoded as json.RawMessage
// (copies), which takes any JSON value: the path of bodies the fast one refuses.
func decodeReviewCopying(body []byte) (*Review, error) {
	var ar wireReviewCopying
	if err := gojson.Unmarshal(body, &ar); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected end of JSON input") {
			return nil, errors.New("not an AdmissionReview: unexpected end of JSON input")
		}
		return nil, fmt.Errorf("not an AdmissionReview: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	review := &Review{APIVersion: ar.APIVersion, Kind: ar.Kind}
	if ar.Request != nil {
		review.Request = &ar.Request.AdmissionRequest
		review.Request.Object.Raw = rawObject(ar.Request.Object)
		review.Request.OldObject.Raw = rawObject(ar.Request.OldObject)
	}
	return review, nil
}

// rawObject is what runtime.RawExtension would hold: nothing for a JSON null.
func rawObject(m []byte) []byte {
	if string(m) == "null" {
		return nil
	}
	return m
}

// wireReview is an AdmissionReview as decoded from the wire, the objects left out:
// checked as JSON objects (an empty struct keeps none of their fields) and then found
// in the body (engine.FieldValues). Decoding them as runtime.RawExtension would copy
// them twice, as json.RawMessage once.
type wireReview struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Request    *wireRequest `json:"request"`
}

type wireRequest struct {
	admissionv1.AdmissionRequest
	// These shadow the embedded request's fields of the same JSON names.
	Object    struct{} `json:"object"`
	OldObject struct{} `json:"oldObject"`
}

// wireReviewCopying is wireReview with the objects as copies of any JSON value.
type wireReviewCopying struct {
	APIVersion string              `json:"apiVersion"`
	Kind       string              `json:"kind"`
	Request    *wireRequestCopying `json:"request"`
}

type wireRequestCopying struct {
	admissionv1.AdmissionRequest
	Object    json.RawMessage `json:"object"`
	OldObject json.RawMessage `json:"oldObject"`
}

// Attributes converts the request's attributes for the engine.
func Attributes(r *admissionv1.AdmissionRequest) engine.Attributes {
	a := engine.Attributes{
		UID:         string(r.UID),
		Kind:        engine.GroupVersionKind{Group: r.Kind.Group, Version: r.Kind.Version, Kind: r.Kind.Kind},
		Resource:    engine.GroupVersionResource{Group: r.Resource.Group, Version: r.Resource.Version, Resource: r.Resource.Resource},
		SubResource: r.SubResource,
		Name:        r.Name,
		Namespace:   r.Namespace,
		Operation:   string(r.Operation),
		UserInfo:    engine.UserInfo{Username: r.UserInfo.Username, UID: r.UserInfo.UID, Groups: r.UserInfo.Groups},
	}
	if r.DryRun != nil {
		a.DryRun = *r.DryRun
	}
	return a
}
