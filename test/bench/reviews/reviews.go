// Package reviews prepares AdmissionReview bodies for the benchmarks and the load
// tool: a body with the positions of the bytes that are rewritten per request, in
// place and without changing its length:
//
//   - the request UID, always: the API server never sends one twice, so no
//     memoisation may key on it;
//   - the pod-template hash, when varying (generateName, the pod-template-hash label,
//     the owner ReplicaSet's name): what a new Deployment revision changes, and fields
//     the policies read, so that no memoisation can answer the request. The work is
//     unchanged, the hash keeping its length.
package reviews

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
)

// Template is a review body and where to rewrite it. Its methods rewrite Body in place:
// copy it first when it is still being sent.
type Template struct {
	Body    []byte
	uid     []int // offsets of the UID's last 12 characters
	hash    []int // offsets of the template hash
	hashLen int
}

// benchdata's UID and template hash.
const (
	benchUID  = "705ab4f5-6393-11e8-b7cc-42010a800002"
	benchHash = "7d4b9c5f8"
)

// Benchdata returns benchdata's review of the given size, byte for byte.
func Benchdata(size benchdata.Size) *Template {
	t, err := find(benchdata.Review(size), `"`+benchUID+`"`, 1+len(benchUID)-12, benchHash)
	if err != nil {
		panic(err)
	}
	return t
}

// Options change a review in Prepare.
type Options struct {
	// Namespace, when set, replaces the request's and the pod's namespace.
	Namespace string
	// Vary installs a template hash that SetTemplate rewrites.
	Vary bool
}

// Markers placed by Prepare, then found and overwritten.
const (
	uidMarker  = "^^^^^^^^^^^^" // 12
	hashMarker = "~~~~~~~~~~"   // 10 when the pod has no hash
)

// Prepare turns any AdmissionReview of a pod into a template: the UID gets a
// rewritable tail; with Vary, the pod's pod-template-hash label (added if missing),
// its generateName (the hash inserted if it was not there) and its owners' names carry
// a rewritable hash.
func Prepare(review []byte, o Options) (*Template, error) {
	dec := json.NewDecoder(bytes.NewReader(review))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not an AdmissionReview: %v", err)
	}
	req, ok := m["request"].(map[string]any)
	if !ok {
		return nil, errors.New("the AdmissionReview has no request")
	}
	obj, ok := req["object"].(map[string]any)
	if !ok {
		return nil, errors.New("the AdmissionReview's request has no object")
	}
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	uid, _ := req["uid"].(string)
	if len(uid) < 12 {
		uid = "00000000-0000-4000-8000-000000000000"
	}
	req["uid"] = uid[:len(uid)-12] + uidMarker
	if o.Namespace != "" {
		req["namespace"] = o.Namespace
		meta["namespace"] = o.Namespace
	}
	hashLen := 0
	if o.Vary {
		labels, _ := meta["labels"].(map[string]any)
		if labels == nil {
			labels = map[string]any{}
			meta["labels"] = labels
		}
		old, _ := labels["pod-template-hash"].(string)
		// Keep the hash's length when it has one (then the body keeps its length).
		hashLen = len(hashMarker)
		if len(old) >= 6 {
			hashLen = len(old)
		}
		mark := strings.Repeat("~", hashLen)
		labels["pod-template-hash"] = mark
		gn, _ := meta["generateName"].(string)
		switch {
		case old != "" && strings.Contains(gn, old):
			gn = strings.ReplaceAll(gn, old, mark)
		case gn == "":
			gn = "pod-" + mark + "-"
		default:
			gn += mark + "-"
		}
		meta["generateName"] = gn
		if owners, ok := meta["ownerReferences"].([]any); ok && old != "" {
			for _, ow := range owners {
				if ref, ok := ow.(map[string]any); ok {
					if name, ok := ref["name"].(string); ok {
						ref["name"] = strings.ReplaceAll(name, old, mark)
					}
				}
			}
		}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	hash := ""
	if o.Vary {
		hash = strings.Repeat("~", hashLen)
	}
	t, err := find(body, uidMarker, 0, hash)
	if err != nil {
		return nil, err
	}
	t.SetUID(0)
	if o.Vary {
		t.SetTemplate(0)
	}
	return t, nil
}

// find builds a template from the occurrences of uid (rewritten from uidOff on, 12
// characters) and hash (rewritten whole; empty for none).
func find(body []byte, uid string, uidOff int, hash string) (*Template, error) {
	t := &Template{Body: bytes.Clone(body), hashLen: len(hash)}
	for _, off := range offsets(t.Body, uid) {
		t.uid = append(t.uid, off+uidOff)
	}
	if len(t.uid) == 0 {
		return nil, fmt.Errorf("uid %q not found in the review", uid)
	}
	if hash != "" {
		if t.hash = offsets(t.Body, hash); len(t.hash) == 0 {
			return nil, fmt.Errorf("template hash %q not found in the review", hash)
		}
	}
	return t, nil
}

func offsets(b []byte, s string) []int {
	var out []int
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(s))
		if j < 0 {
			return out
		}
		out = append(out, i+j)
		i += j + len(s)
	}
}

// SetUID writes n as the UID's last 12 hex digits.
func (t *Template) SetUID(n uint64) {
	for _, off := range t.uid {
		putHex(t.Body[off:off+12], n)
	}
}

// SetTemplate writes n as the template hash (hex digits, as many as the hash has).
func (t *Template) SetTemplate(n uint64) {
	for _, off := range t.hash {
		putHex(t.Body[off:off+t.hashLen], n)
	}
}

// Varies says whether SetTemplate changes anything.
func (t *Template) Varies() bool { return len(t.hash) > 0 }

// UIDSuffix returns the 12 characters SetUID(n) writes, to check a response's UID.
func UIDSuffix(n uint64) string {
	var b [12]byte
	putHex(b[:], n)
	return string(b[:])
}

func putHex(dst []byte, n uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[n&15]
		n >>= 4
	}
}
