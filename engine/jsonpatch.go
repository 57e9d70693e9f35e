package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	gojson "github.com/goccy/go-json"
)

// Op is one RFC 6902 JSON Patch operation. The engine only produces add, replace and
// remove; policies may also use test in a json-patch mutation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`

	// segs is Path split, when the engine built it from segments (so it is not split
	// again); dropped once the op is applied.
	segs []string
}

// newOp builds an op whose path is made of segments.
func newOp(op string, value any, segs ...string) Op {
	return Op{Op: op, Path: pointer(segs...), Value: value, segs: segs}
}

// MarshalJSON keeps "value" on add, replace and test even when it is null or false,
// which omitempty would drop.
func (o Op) MarshalJSON() ([]byte, error) { return o.appendJSON(nil) }

// appendJSON appends the op as JSON. The value is encoded by appendJSONValue, which
// writes what encoding/json writes (map keys sorted), so equal patches are equal
// bytes.
func (o Op) appendJSON(b []byte) ([]byte, error) {
	b, _, err := o.appendJSONSpan(b)
	return b, err
}

// appendJSONSpan is appendJSON that also says where the value starts in b (-1 for
// remove, which has none); it ends one byte before the end.
func (o Op) appendJSONSpan(b []byte) ([]byte, int, error) {
	b = o.appendJSONHead(b)
	if o.Op == "remove" {
		return append(b, '}'), -1, nil
	}
	b = append(b, `,"value":`...)
	start := len(b)
	if raw, ok := encodedValue(o.Value); ok { // a memoised op: already encoded
		return append(append(b, raw...), '}'), start, nil
	}
	b, err := appendJSONValue(b, o.Value)
	if err != nil {
		return nil, 0, fmt.Errorf("op %s %s: %w", o.Op, o.Path, err)
	}
	return append(b, '}'), start, nil
}

// appendJSONHead appends the op's start, up to its path: {"op":...,"path":...
func (o Op) appendJSONHead(b []byte) []byte {
	b = appendJSONString(append(b, `{"op":`...), o.Op)
	return appendJSONString(append(b, `,"path":`...), o.Path)
}

// appendJSONValue appends v as JSON, as encoding/json would write it (map keys
// sorted, HTML characters escaped). The types of decoded JSON and of Rego results are
// written here directly; a generic encoder spent most of its time reflecting on them
// and sorting through its own buffers. Anything else goes to goccy/go-json.
func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, t), nil
	case bool:
		return strconv.AppendBool(b, t), nil
	case int64:
		return strconv.AppendInt(b, t, 10), nil
	case int:
		return strconv.AppendInt(b, int64(t), 10), nil
	case []any:
		b = append(b, '[')
		for i, e := range t {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		var small [8]string
		keys := small[:0]
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendJSONValue(b, t[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	enc, err := gojson.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, enc...), nil
}

// decodedValue is the op's value as decoded JSON: memoised ops hold theirs encoded.
func (o Op) decodedValue() (any, error) {
	if raw, ok := encodedValue(o.Value); ok {
		return decodeValue(raw)
	}
	return o.Value, nil
}

// encodedValue returns an op's value that is already JSON: a *json.RawMessage (what
// marshalPatchValues gives memoised ops, pointers into one slab rather than a boxed
// slice each) or a json.RawMessage.
func encodedValue(v any) (json.RawMessage, bool) {
	switch t := v.(type) {
	case *json.RawMessage:
		return *t, t != nil
	case json.RawMessage:
		return t, true
	}
	return nil, false
}

// appendJSONString appends s as a JSON string, escaped as encoding/json escapes it
// (HTML characters included).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			enc, _ := gojson.Marshal(s) // rare: escapes needed
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// marshalPatch encodes ops as a JSON array ("[]" when there are none).
func marshalPatch(ops []Op) ([]byte, error) {
	b, _, err := marshalPatchValues(ops, false)
	return b, err
}

// marshalPatchValues is marshalPatch that, when asked, also returns each op with its
// value replaced by its encoding within the returned bytes (*json.RawMessage): the
// compact form the memo keeps, which shares the patch's bytes instead of holding the
// decoded values (maps cost several times their JSON).
func marshalPatchValues(ops []Op, compact bool) ([]byte, []Op, error) {
	// Encoded into a reused buffer, then copied out at its exact size: growing a
	// fresh buffer allocated about three times the patch.
	scratch := patchBuffers.Get().(*[]byte)
	defer func() {
		if cap(*scratch) <= maxPooledPatchBuffer {
			patchBuffers.Put(scratch)
		}
	}()
	b := append((*scratch)[:0], '[')
	type span struct{ start, end int }
	var spans []span
	if compact {
		spans = make([]span, len(ops))
	}
	// One mutation gives the same value to several containers (an env item, a
	// volumeMount): each distinct value is encoded once and its bytes repeated.
	encoded := make(map[valueIdentity]span, 8)
	for i, o := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		start := -1
		id, shared := identityOf(o.Value)
		if sp, seen := encoded[id]; shared && seen && o.Op != "remove" {
			b = append(o.appendJSONHead(b), `,"value":`...)
			start = len(b)
			b = append(append(b, b[sp.start:sp.end]...), '}')
		} else {
			if b, start, err = o.appendJSONSpan(b); err != nil {
				return nil, nil, err
			}
			if shared && start >= 0 {
				encoded[id] = span{start, len(b) - 1}
			}
		}
		if compact {
			spans[i] = span{start, len(b) - 1}
		}
	}
	b = append(b, ']')
	*scratch = b
	b = slices.Clip(slices.Clone(b)) // exact size: callers may append
	if !compact {
		return b, nil, nil
	}
	out := make([]Op, len(ops))
	raws := make([]json.RawMessage, len(ops))
	for i, o := range ops {
		out[i] = Op{Op: o.Op, Path: o.Path}
		if sp := spans[i]; sp.start >= 0 {
			raws[i] = b[sp.start:sp.end:sp.end]
			out[i].Value = &raws[i]
		}
	}
	return b, out, nil
}

// patchBuffers holds the encoder's scratch buffers; one bigger than
// maxPooledPatchBuffer (a pod with hundreds of containers) is left to the collector.
var patchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

const maxPooledPatchBuffer = 256 << 10

// valueIdentity identifies a map or a slice by its storage: two op values with the
// same identity are the same value (ops' values are not changed once emitted).
type valueIdentity struct {
	p unsafe.Pointer
	n int // the slice's length; -1 for a map
}

// identityOf returns the identity of a map or non-empty slice value; false for others
// (scalars are cheap to encode again).
func identityOf(v any) (valueIdentity, bool) {
	switch t := v.(type) {
	case map[string]any:
		return valueIdentity{p: *(*unsafe.Pointer)(unsafe.Pointer(&t)), n: -1}, true
	case []any:
		if len(t) > 0 {
			return valueIdentity{p: unsafe.Pointer(unsafe.SliceData(t)), n: len(t)}, true
		}
	}
	return valueIdentity{}, false
}

// pointer builds a JSON Pointer from segments, escaping "~" and "/".
func pointer(segments ...string) string {
	n := 0
	for _, s := range segments {
		n += 1 + len(s)
	}
	var b strings.Builder
	b.Grow(n) // exact unless a segment has "~" or "/"
	for _, s := range segments {
		b.WriteByte('/')
		if strings.ContainsAny(s, "~/") {
			b.WriteString(escapePointer(s))
		} else {
			b.WriteString(s)
		}
	}
	return b.String()
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
var pointerUnescaper = strings.NewReplacer("~1", "/", "~0", "~")

func escapePointer(s string) string { return pointerEscaper.Replace(s) }

// splitPointer parses a JSON Pointer into unescaped segments.
func splitPointer(p string) ([]string, error) {
	if p == "" {
		return nil, errors.New("the empty path (the whole pod) cannot be patched")
	}
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("path %q must start with '/'", p)
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		parts[i] = pointerUnescaper.Replace(s)
	}
	return parts, nil
}

// applyOp applies one operation to doc in place. Values are copied in, so the op
// (which is also recorded in the result patch) never aliases the document.
//
// The engine keeps the pod decoded between policies and patches it here rather than
// with a JSON Patch library, which works on bytes and would re-decode the whole pod
// for every policy. The result is checked against evanphx/json-patch in the tests.
func applyOp(doc map[string]any, op Op) error {
	segs, err := splitPointer(op.Path)
	if err != nil {
		return err
	}
	return applySegs(doc, segs, op)
}

// applySegs is applyOp with the path already split.
func applySegs(doc map[string]any, segs []string, op Op) error {
	switch op.Op {
	case "add", "replace", "remove", "test":
	default:
		return fmt.Errorf("unsupported operation %q (use add, replace, remove or test)", op.Op)
	}
	v, err := op.decodedValue()
	if err != nil {
		return fmt.Errorf("op %s %s: %w", op.Op, op.Path, err)
	}
	op.Value = v
	_, err = applyAt(doc, segs, 0, op)
	return err
}

// applyAt applies op at segs[depth:] below node; segs[:depth] is where node is, for
// messages (built only when there is one to give).
func applyAt(node any, segs []string, depth int, op Op) (any, error) {
	if l, ok := node.(*rawList); ok && op.Op == "add" && depth == len(segs)-1 && segs[depth] == "-" && l.isArray() {
		l.appended = append(l.appended, op.Value) // appended without decoding, copied when decoded
		return l, nil
	}
	node, err := materialized(node) // a raw list is decoded, and stored back by the caller
	if err != nil {
		return nil, err
	}
	key := segs[depth]
	here := pointerOf(segs[:depth+1])
	if depth+1 < len(segs) {
		switch n := node.(type) {
		case map[string]any:
			child, ok := n[key]
			if !ok {
				return nil, fmt.Errorf("%s does not exist", here)
			}
			nc, err := applyAt(child, segs, depth+1, op)
			if err != nil {
				return nil, err
			}
			n[key] = nc
			return n, nil
		case []any:
			i, err := arrayIndex(key, len(n), false, here)
			if err != nil {
				return nil, err
			}
			nc, err := applyAt(n[i], segs, depth+1, op)
			if err != nil {
				return nil, err
			}
			n[i] = nc
			return node, nil // the same slice, already boxed: returning n would box it again
		default:
			return nil, fmt.Errorf("%s: cannot descend into %s", here, jsonKind(node))
		}
	}
	switch n := node.(type) {
	case map[string]any:
		old, exists := n[key]
		if op.Op == "test" {
			if old, err = materialized(old); err != nil {
				return nil, err
			}
		}
		switch op.Op {
		case "add":
			n[key] = deepCopy(op.Value)
		case "replace":
			if !exists {
				return nil, fmt.Errorf("%s does not exist (replace needs an existing value; use add)", here)
			}
			n[key] = deepCopy(op.Value)
		case "remove":
			if !exists {
				return nil, fmt.Errorf("%s does not exist", here)
			}
			delete(n, key)
		case "test":
			if !exists || !reflect.DeepEqual(old, op.Value) {
				return nil, fmt.Errorf("test failed at %s", here)
			}
		}
		return n, nil
	case []any:
		switch op.Op {
		case "add":
			if key == "-" {
				return append(n, deepCopy(op.Value)), nil
			}
			i, err := arrayIndex(key, len(n), true, here)
			if err != nil {
				return nil, err
			}
			n = append(n, nil)
			copy(n[i+1:], n[i:])
			n[i] = deepCopy(op.Value)
			return n, nil
		case "replace", "remove", "test":
			i, err := arrayIndex(key, len(n), false, here)
			if err != nil {
				return nil, err
			}
			switch op.Op {
			case "replace":
				n[i] = deepCopy(op.Value)
				return node, nil // the same slice
			case "remove":
				n = append(n[:i], n[i+1:]...)
			case "test":
				if !reflect.DeepEqual(n[i], op.Value) {
					return nil, fmt.Errorf("test failed at %s", here)
				}
			}
			return n, nil
		}
	}
	return nil, fmt.Errorf("%s: cannot patch inside %s", pointerOf(segs[:depth]), jsonKind(node))
}

// pointerOf is a lazily built JSON Pointer, for error messages.
type pointerOf []string

func (p pointerOf) String() string { return pointer(p...) }

func arrayIndex(s string, n int, allowEnd bool, at pointerOf) (int, error) {
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || (s != "0" && strings.HasPrefix(s, "0")) {
		return 0, fmt.Errorf("%s: %q is not an array index", at, s)
	}
	if i > n || (i == n && !allowEnd) {
		return 0, fmt.Errorf("%s: index %d is out of range (length %d)", at, i, n)
	}
	return i, nil
}

// lookup returns the value at the segments, if any, with raw lists decoded (for
// reading: they stay raw in doc).
func lookup(doc any, segs ...string) (any, bool) {
	cur := doc
	for _, s := range segs {
		var err error
		if cur, err = materialized(cur); err != nil {
			return nil, false
		}
		switch n := cur.(type) {
		case map[string]any:
			v, ok := n[s]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(s)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			cur = n[i]
		default:
			return nil, false
		}
	}
	cur, err := materialized(cur)
	return cur, err == nil
}
