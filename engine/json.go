package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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

// decodeProjected decodes only the parts of a JSON object the projection holds. The
// whole document is still checked for syntax (by encoding/json), so a malformed pod is
// reported whatever the projection.
func decodeProjected(data []byte, p *projection) (map[string]any, error) {
	if p.all {
		return decodeObject(data)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field == "" {
			return nil, fmt.Errorf("must be a JSON object, got %s", ute.Value)
		}
		return nil, jsonError(err)
	}
	if raw == nil {
		return nil, errors.New("must be a JSON object, got null")
	}
	return projectRaw(raw, p)
}

func projectRaw(raw map[string]json.RawMessage, p *projection) (map[string]any, error) {
	out := make(map[string]any, len(p.children))
	for k, child := range p.children {
		rm, ok := raw[k]
		if !ok {
			continue
		}
		v, err := projectValue(rm, child)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func projectValue(rm json.RawMessage, p *projection) (any, error) {
	trimmed := bytes.TrimLeft(rm, " \t\r\n")
	if p.all || len(trimmed) == 0 || trimmed[0] != '{' {
		// A whole subtree, or a non-object where an object was expected (kept as
		// it is: policies see what was sent).
		dec := json.NewDecoder(bytes.NewReader(rm))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, jsonError(err)
		}
		return normalizeNumbers(v), nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rm, &raw); err != nil {
		return nil, jsonError(err)
	}
	return projectRaw(raw, p)
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
