package engine

import (
	"encoding/json"
	"errors"
)

// rawList is a container's env, envFrom or volumeMounts list kept as its JSON in the
// working pod until something reads its items. A pod's env entries are most of what
// the shallow container decode would build (maps of name, value and valueFrom), and
// the default policies never read them: they read the names, from input.index, and
// append. Whatever reads or changes the items decodes the list in place first
// (applyAt, setEnv, lookup); CEL and Rego see decoded lists (materialize).
//
// Items appended at the end (add .../env/-, what add-env does to a container that
// has env) are kept beside the raw JSON rather than decoding it to append. They are
// the patch operations' own values, shared rather than copied (one add-env gives the
// same items to every container it names): decode copies them, so the working pod
// never aliases the patch, and nothing changes them before that.
type rawList struct {
	raw      json.RawMessage
	appended []any
}

// decode returns the list as decoded JSON (numbers normalised), appended items
// included. It fails only on JSON that was not checked (see Program.Scan).
func (l *rawList) decode() (any, error) {
	v, err := decodeValue(l.raw)
	if err != nil || len(l.appended) == 0 {
		return v, err
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("items were appended to a list that is not an array")
	}
	for _, item := range l.appended {
		list = append(list, deepCopy(item))
	}
	return list, nil
}

// isArray says the raw JSON is an array (its first byte: the JSON was checked).
func (l *rawList) isArray() bool {
	i := skipSpace(l.raw, 0)
	return i < len(l.raw) && l.raw[i] == '['
}

// names returns the "name" strings of the list's object items, in order, without
// decoding them; ok is false when the list is not an array.
func (l *rawList) names() (names []string, ok bool) {
	ok = forEachElement(l.raw, func(item json.RawMessage) {
		if !isJSONObject(item) {
			return
		}
		v, _, err := lastFields(item, "name", "")
		if err != nil || v == nil {
			return
		}
		// Aliases the list's bytes: the names become terms of one request's Rego input
		// (buildIndex), and the pod's bytes outlive it.
		if s, err := jsonStringAlias(v); err == nil && !isJSONNull(v) {
			names = append(names, s)
		}
	}) == nil
	for _, item := range l.appended {
		if m, isObj := item.(map[string]any); isObj {
			if n, isStr := m["name"].(string); isStr {
				names = append(names, n)
			}
		}
	}
	return names, ok
}

// materialized returns v with a rawList decoded.
func materialized(v any) (any, error) {
	if l, ok := v.(*rawList); ok {
		return l.decode()
	}
	return v, nil
}

// materializeContainers decodes every rawList of the pod's containers in place,
// before CEL or Rego read the containers themselves.
func materializeContainers(doc map[string]any) error {
	spec, _ := doc["spec"].(map[string]any)
	for _, list := range []string{"initContainers", "containers"} {
		items, _ := spec[list].([]any)
		for _, item := range items {
			c, ok := item.(map[string]any)
			if !ok {
				continue
			}
			for k, v := range c {
				dv, err := materialized(v)
				if err != nil {
					return err
				}
				c[k] = dv
			}
		}
	}
	return nil
}

// forEachElement calls fn with each element of a JSON array, as a sub-slice of data.
// data must be valid JSON.
func forEachElement(data []byte, fn func(json.RawMessage)) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return errors.New("expected a JSON array")
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return nil
	}
	for i < len(data) {
		end := skipValue(data, i)
		fn(data[i:end])
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
			continue
		}
		if i < len(data) && data[i] == ']' {
			return nil
		}
		return errors.New("expected ',' or ']' in a JSON array")
	}
	return errors.New("unexpected end of a JSON array")
}
