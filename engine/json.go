package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unsafe"

	gojson "github.com/goccy/go-json"
)

// decodeObject decodes a JSON object keeping every field, with numbers as int64 when
// they are whole and float64 otherwise (what both CEL and Rego compare naturally).
func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a JSON object, got %s", jsonKind(v))
	}
	return normalizeNumbers(obj).(map[string]any), nil
}

// leaf is one projected subtree of a pod, still as raw JSON.
type leaf struct {
	path    []string
	raw     json.RawMessage
	shallow shallowDecoder // decodes this list element by element, in part; nil: all of it
}

// splitProjected cuts a JSON object along the projection into the raw JSON of each
// projected subtree, in a deterministic order, without decoding them: enough to hash
// the pod for the memo, and to decode only what policies read. The whole document is
// checked for syntax on the way.
func splitProjected(data []byte, p *projection) ([]leaf, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("empty input: expected a JSON object")
	}
	if trimmed[0] != '{' {
		var v any
		if err := gojson.Unmarshal(data, &v); err != nil {
			return nil, jsonError(err)
		}
		return nil, fmt.Errorf("must be a JSON object, got %s", jsonKind(v))
	}
	if !gojson.Valid(data) {
		_, err := decodeObject(data) // for encoding/json's precise message
		return nil, err
	}
	return splitTrusted(data, p)
}

// splitTrusted is splitProjected for data known to be valid JSON: the parts outside
// the projection are skipped, not checked.
func splitTrusted(data []byte, p *projection) ([]leaf, error) {
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("expected a JSON object")
	}
	if p.all {
		return []leaf{{raw: data}}, nil
	}
	out := make([]leaf, 0, p.leafCount)
	_, err := splitAt(data, 0, p, &out)
	if errors.Is(err, errSplitAgain) {
		out = out[:0]
		err = splitInto(data, p, &out)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// errSplitAgain: splitAt met an object it does not handle (a projected key twice),
// which splitInto splits instead.
var errSplitAgain = errors.New("engine: split again with splitInto")

// splitAt splits the object starting at data[i] (valid JSON) along p in one pass and
// returns the index after it. It descends into a projected object where it finds it
// rather than skipping it first and splitting it afterwards, so each byte of the pod
// is looked at once, not once per level of the projection above it. The leaves come
// in document order. A projected key that appears twice (the later one wins, as in
// encoding/json) is left to splitInto: errSplitAgain.
func splitAt(data []byte, i int, p *projection, out *[]leaf) (int, error) {
	if len(p.keys)+len(p.shallowKeys) > 64 {
		return 0, errSplitAgain // more keys than the seen mask holds
	}
	var seen uint64
	once := func(bit int) bool {
		if seen&(1<<bit) != 0 {
			return false
		}
		seen |= 1 << bit
		return true
	}
	return scanObject(data, i, func(key string, vStart int) (int, error) {
		if k := slices.Index(p.keys, key); k >= 0 {
			if !once(k) {
				return 0, errSplitAgain
			}
			if child := p.children[key]; !child.all && vStart < len(data) && data[vStart] == '{' {
				return splitAt(data, vStart, child, out)
			}
			// A whole subtree, or a non-object where an object was expected (kept as
			// it is: policies see what was sent).
			vEnd := skipValue(data, vStart)
			*out = append(*out, leaf{path: p.keyPaths[k], raw: data[vStart:vEnd]})
			return vEnd, nil
		}
		vEnd := skipValue(data, vStart)
		if k := slices.Index(p.shallowKeys, key); k >= 0 {
			if !once(len(p.keys) + k) {
				return 0, errSplitAgain
			}
			*out = append(*out, leaf{path: p.shallowPaths[k], raw: data[vStart:vEnd], shallow: p.shallow[key]})
		}
		return vEnd, nil
	})
}

// splitInto splits the object data along p, the leaves in the projection's key
// order; it handles duplicate keys, which splitAt does not.
func splitInto(data []byte, p *projection, out *[]leaf) error {
	// The projected fields of this object, by position in p.keys then p.shallowKeys;
	// a later duplicate key wins, as in encoding/json.
	var small [16]json.RawMessage
	n := len(p.keys) + len(p.shallowKeys)
	found := small[:0]
	if n <= len(small) {
		found = small[:n]
	} else {
		found = make([]json.RawMessage, n)
	}
	err := forEachField(data, func(key string, value json.RawMessage) {
		if i := slices.Index(p.keys, key); i >= 0 {
			found[i] = value
		} else if i := slices.Index(p.shallowKeys, key); i >= 0 {
			found[len(p.keys)+i] = value
		}
	})
	if err != nil {
		return err
	}
	for i, k := range p.keys {
		rm := found[i]
		if rm == nil {
			continue
		}
		child := p.children[k]
		trimmed := bytes.TrimLeft(rm, " \t\r\n")
		if child.all || len(trimmed) == 0 || trimmed[0] != '{' {
			// A whole subtree, or a non-object where an object was expected (kept
			// as it is: policies see what was sent).
			*out = append(*out, leaf{path: p.keyPaths[i], raw: rm})
			continue
		}
		if err := splitInto(rm, child, out); err != nil {
			return err
		}
	}
	for i, k := range p.shallowKeys {
		if rm := found[len(p.keys)+i]; rm != nil {
			*out = append(*out, leaf{path: p.shallowPaths[i], raw: rm, shallow: p.shallow[k]})
		}
	}
	return nil
}

// A shallowDecoder decodes a list of objects in the parts the mutation vocabulary
// reads.
type shallowDecoder func(raw json.RawMessage) (any, error)

// decodeContainersShallow decodes a list of containers in what the vocabulary reads:
// each container's name, and its env, envFrom and volumeMounts kept raw (rawList)
// until read. The other fields (image, probes, resources, ports, ...) are passed over
// without building anything.
func decodeContainersShallow(raw json.RawMessage) (any, error) {
	return decodeObjectsShallow(raw, 4, func(m map[string]any, key string, value json.RawMessage) error {
		switch key {
		case "name":
			if isJSONNull(value) {
				delete(m, "name")
				return nil
			}
			v, err := decodeScalar(value)
			m["name"] = v
			return err
		case "env", "envFrom", "volumeMounts":
			k := rawListKeys[key]
			if isJSONNull(value) {
				delete(m, k)
			} else {
				m[k] = &rawList{raw: value}
			}
		}
		return nil
	})
}

// rawListKeys are the keys decodeContainersShallow stores, as constants: forEachField's
// key aliases the pod's bytes.
var rawListKeys = map[string]string{"env": "env", "envFrom": "envFrom", "volumeMounts": "volumeMounts"}

// decodeVolumesShallow keeps each volume's keys (the guard reads the source type from
// them) with their values raw, but decodes its name.
func decodeVolumesShallow(raw json.RawMessage) (any, error) {
	return decodeObjectsShallow(raw, 2, func(m map[string]any, key string, value json.RawMessage) error {
		if key == "name" {
			v, err := decodeValue(value)
			m["name"] = v
			return err
		}
		m[internVolumeKey(key)] = value
		return nil
	})
}

// decodeObjectsShallow decodes a list of objects (valid JSON, see splitProjected) into
// a map each, built by field from the object's fields (its key valid during the call
// only); items that are not objects, and a value that is not a list, are decoded as
// sent.
func decodeObjectsShallow(raw json.RawMessage, size int, field func(m map[string]any, key string, value json.RawMessage) error) (any, error) {
	if !isJSONArray(raw) {
		return decodeValue(raw)
	}
	out := []any{}
	var err error
	if e := forEachElement(raw, func(item json.RawMessage) {
		if err != nil {
			return
		}
		if !isJSONObject(item) {
			var v any
			v, err = decodeValue(item)
			out = append(out, v)
			return
		}
		m := make(map[string]any, size)
		if e := forEachField(item, func(key string, value json.RawMessage) {
			if err == nil {
				err = field(m, key, value)
			}
		}); e != nil && err == nil {
			err = e
		}
		out = append(out, m)
	}); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// internVolumeKey returns a volume's key as a string of its own (forEachField's key
// aliases the pod's bytes), the usual ones without an allocation.
func internVolumeKey(k string) string {
	switch k {
	case "projected":
		return "projected"
	case "configMap":
		return "configMap"
	case "secret":
		return "secret"
	case "emptyDir":
		return "emptyDir"
	case "persistentVolumeClaim":
		return "persistentVolumeClaim"
	case "hostPath":
		return "hostPath"
	case "downwardAPI":
		return "downwardAPI"
	}
	return strings.Clone(k)
}

// isJSONArray says valid JSON data is an array.
func isJSONArray(data []byte) bool {
	i := skipSpace(data, 0)
	return i < len(data) && data[i] == '['
}

// decodeScalar is decodeValue with a shortcut for plain ASCII strings (names).
func decodeScalar(raw json.RawMessage) (any, error) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && plainASCII(raw[1:n-1]) {
		return string(raw[1 : n-1]), nil
	}
	return decodeValue(raw)
}

// decodeValue decodes any JSON value, numbers normalised.
func decodeValue(raw json.RawMessage) (any, error) {
	var v any
	if err := gojson.Unmarshal(raw, &v); err != nil {
		return nil, jsonError(err)
	}
	return normalizeNumbers(v), nil
}

// forEachField calls fn with each field of a JSON object, in order, the value as a
// sub-slice of data. The key is only valid during the call (it may alias data, see
// objectKey): fn must clone it to keep it. data must be valid JSON.
func forEachField(data []byte, fn func(key string, value json.RawMessage)) error {
	_, err := scanObject(data, 0, func(key string, vStart int) (int, error) {
		vEnd := skipValue(data, vStart)
		fn(key, data[vStart:vEnd])
		return vEnd, nil
	})
	return err
}

// scanObject walks the (valid JSON) object starting at data[i]: for each field it
// calls value with the key (valid during the call only, see objectKey) and where the
// value starts, and value returns where it ends, having skipped it or read it.
// scanObject returns the index after the object.
func scanObject(data []byte, i int, value func(key string, vStart int) (vEnd int, err error)) (int, error) {
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != '{' {
		return 0, errors.New("expected a JSON object")
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	for i < len(data) {
		kEnd := skipString(data, i)
		key, err := objectKey(data[i:kEnd])
		if err != nil {
			return 0, err
		}
		i = skipSpace(data, kEnd)
		if i >= len(data) || data[i] != ':' {
			return 0, errors.New("expected ':' in a JSON object")
		}
		vEnd, err := value(key, skipSpace(data, i+1))
		if err != nil {
			return 0, err
		}
		i = skipSpace(data, vEnd)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
			continue
		}
		if i < len(data) && data[i] == '}' {
			return i + 1, nil
		}
		return 0, errors.New("expected ',' or '}' in a JSON object")
	}
	return 0, errors.New("unexpected end of a JSON object")
}

// objectKey decodes a quoted object key. A plain ASCII key without escapes (all of a
// pod's, in practice) is returned as a string that aliases quoted, without a copy: a
// decoder call, or even a copy, per key cost more than the rest of the split. Other
// keys go through encoding/json, which also replaces invalid UTF-8 as every other
// decoder of the pod does.
func objectKey(quoted []byte) (string, error) {
	if len(quoted) >= 2 && quoted[0] == '"' && quoted[len(quoted)-1] == '"' && plainASCII(quoted[1:len(quoted)-1]) {
		inner := quoted[1 : len(quoted)-1]
		return unsafe.String(unsafe.SliceData(inner), len(inner)), nil
	}
	var key string
	if err := json.Unmarshal(quoted, &key); err != nil {
		return "", jsonError(err)
	}
	return key, nil
}

// plainASCII says b has no backslash and no byte outside ASCII.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at data[i] (a '"').
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// Words of eight bytes for skipValue's string loop: a byte of w^quotes is zero where
// w has a quote; (x-lows)&^x&highs is non-zero when a byte of x is zero.
const (
	lows        = 0x0101010101010101
	highs       = 0x8080808080808080
	quotes      = '"' * lows
	backslashes = '\\' * lows
)

// skipClass sorts the bytes that matter when skipping an object or array: 1 opens a
// string, 2 an object or array, 3 closes one; 0 is passed over.
var skipClass = [256]uint8{'"': 1, '{': 2, '[': 2, '}': 3, ']': 3}

// skipValue returns the index after the (valid) JSON value starting at data[i]. It
// runs for most of a pod's bytes on every admission, so strings inside objects and
// arrays are skipped inline rather than by a call each.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch skipClass[data[j]] {
			case 0:
			case 1:
				// Eight bytes at a time while none is a quote or a backslash, then
				// byte by byte.
				for j++; j+8 <= len(data); j += 8 {
					w := binary.LittleEndian.Uint64(data[j:])
					q, bs := w^quotes, w^backslashes
					if ((q-lows)&^q|(bs-lows)&^bs)&highs != 0 {
						break
					}
				}
				for ; j < len(data); j++ {
					if c := data[j]; c == '"' {
						break
					} else if c == '\\' {
						j++
					}
				}
			case 2:
				depth++
			case 3:
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	default: // number, true, false, null
		j := i
		for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' && data[j] != ' ' &&
			data[j] != '\t' && data[j] != '\n' && data[j] != '\r' {
			j++
		}
		return j
	}
}

// buildDoc decodes the leaves into one nested object.
func buildDoc(leaves []leaf) (map[string]any, error) {
	doc := map[string]any{}
	for _, l := range leaves {
		var v any
		var err error
		if l.shallow != nil {
			v, err = l.shallow(l.raw)
		} else {
			v, err = decodeValue(l.raw)
		}
		if err != nil {
			return nil, err
		}
		if len(l.path) == 0 {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("must be a JSON object, got %s", jsonKind(v))
			}
			return m, nil
		}
		parent := doc
		for _, k := range l.path[:len(l.path)-1] {
			next, ok := parent[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				parent[k] = next
			}
			parent = next
		}
		parent[l.path[len(l.path)-1]] = v
	}
	return doc, nil
}

// decodeProjected decodes only the parts of a JSON object the projection holds.
func decodeProjected(data []byte, p *projection) (map[string]any, error) {
	leaves, err := splitProjected(data, p)
	if err != nil {
		return nil, err
	}
	return buildDoc(leaves)
}

// normalizeNumbers replaces json.Number values, in place where it can.
func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeNumbers(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = normalizeNumbers(e)
		}
		return t
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return int64(t)
		}
		return t
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		if f, err := t.Float64(); err == nil {
			if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				return int64(f)
			}
			return f
		}
		return t.String()
	}
	return v
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
}

func jsonError(err error) error {
	var gse *gojson.SyntaxError
	if errors.As(err, &gse) {
		return fmt.Errorf("invalid JSON at byte %d: %s", gse.Offset, strings.TrimPrefix(gse.Error(), "json: "))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	if errors.Is(err, io.EOF) {
		return errors.New("empty input: expected a JSON object")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

// deepCopy copies a decoded JSON value.
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}
