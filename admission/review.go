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
// or not an object; a review without a request decodes with Request nil. The review
// refers to nothing of body.
func DecodeReview(body []byte) (*Review, error) { return decodeReview(body, nil) }

// DecodeReviewInto is DecodeReview that copies the object into buf's storage when it
// fits (it always does when cap(buf) >= len(body)) instead of allocating: the review's
// object then refers to buf, which the caller may reuse once done with the review.
func DecodeReviewInto(body, buf []byte) (*Review, error) { return decodeReview(body, buf) }

func decodeReview(body, buf []byte) (*Review, error) {
	if len(body) == 0 {
		return nil, errors.New("empty body: expected an AdmissionReview")
	}
	// goccy/go-json: several times faster than encoding/json on this, the largest
	// decode of an admission. It hands a json.RawMessage the bytes of its value to
	// append to what the field holds, so a field set to buf[:0] is filled in buf.
	var ar wireReview
	if buf != nil {
		ar.Request = &wireRequest{Object: buf[:0]}
	}
	if err := gojson.Unmarshal(body, &ar); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected end of JSON input") {
			return nil, errors.New("not an AdmissionReview: unexpected end of JSON input")
		}
		return nil, fmt.Errorf("not an AdmissionReview: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if buf != nil && ar.Request != nil && len(rawObject(ar.Request.Object)) == 0 {
		// No object, or no request at all, which the request prepared above would
		// hide: decoded again as sent, for the caller's error.
		return decodeReview(body, nil)
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
func rawObject(m json.RawMessage) []byte {
	if string(m) == "null" {
		return nil
	}
	return m
}

// wireReview is an AdmissionReview as decoded from the wire. The objects are
// json.RawMessage rather than runtime.RawExtension: goccy/go-json hands a RawMessage
// the bytes without a copy of its own, and a RawExtension would be copied twice (the
// pod is most of the body).
type wireReview struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Request    *wireRequest `json:"request"`
}

type wireRequest struct {
	admissionv1.AdmissionRequest
	// These shadow the embedded request's fields of the same JSON names.
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
