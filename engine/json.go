package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

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
	path   []string
	raw    json.RawMessage
	fields []string // decode each element of this array in these fields only; nil: all
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
	if p.all {
		if !gojson.Valid(data) {
			_, err := decodeObject(data) // for encoding/json's precise message
			return nil, err
		}
		return []leaf{{raw: data}}, nil
	}
	var out []leaf
	if err := splitInto(data, p, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func splitInto(data []byte, p *projection, path []string, out *[]leaf) error {
	var raw map[string]json.RawMessage
	if err := gojson.Unmarshal(data, &raw); err != nil {
		return jsonError(err)
	}
	for _, k := range p.sortedKeys() {
		rm, ok := raw[k]
		if !ok {
			continue
		}
		child := p.children[k]
		childPath := append(path[:len(path):len(path)], k)
		trimmed := bytes.TrimLeft(rm, " \t\r\n")
		if child.all || len(trimmed) == 0 || trimmed[0] != '{' {
			// A whole subtree, or a non-object where an object was expected (kept
			// as it is: policies see what was sent).
			*out = append(*out, leaf{path: childPath, raw: rm})
			continue
		}
		if err := splitInto(rm, child, childPath, out); err != nil {
			return err
		}
	}
	for _, k := range p.shallowKeys {
		if rm, ok := raw[k]; ok {
			*out = append(*out, leaf{path: append(path[:len(path):len(path)], k), raw: rm, fields: p.shallow[k]})
		}
	}
	return nil
}

// decodeShallow decodes a list of objects, each in the given fields only: the other
// fields keep their raw JSON (a json.RawMessage), opaque to the engine.
func decodeShallow(raw json.RawMessage, fields []string) (any, error) {
	var elems []json.RawMessage
	if err := gojson.Unmarshal(raw, &elems); err != nil || elems == nil {
		// Not a list, or null: keep the value as sent, fully decoded.
		return decodeValue(raw)
	}
	out := make([]any, len(elems))
	for i, e := range elems {
		var obj map[string]json.RawMessage
		if err := gojson.Unmarshal(e, &obj); err != nil || obj == nil {
			v, err := decodeValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = v
			continue
		}
		m := make(map[string]any, len(obj))
		for k, v := range obj {
			if slices.Contains(fields, k) {
				dv, err := decodeValue(v)
				if err != nil {
					return nil, err
				}
				m[k] = dv
			} else {
				m[k] = v
			}
		}
		out[i] = m
	}
	return out, nil
}

// decodeValue decodes any JSON value, numbers normalised.
func decodeValue(raw json.RawMessage) (any, error) {
	var v any
	if err := gojson.Unmarshal(raw, &v); err != nil {
		return nil, jsonError(err)
	}
	return normalizeNumbers(v), nil
}

// buildDoc decodes the leaves into one nested object.
func buildDoc(leaves []leaf) (map[string]any, error) {
	doc := map[string]any{}
	for _, l := range leaves {
		var v any
		var err error
		if l.fields != nil {
			v, err = decodeShallow(l.raw, l.fields)
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
