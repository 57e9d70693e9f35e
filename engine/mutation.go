package engine

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Mutation kinds a policy rule may return. See docs/policies.md, "What a rule returns".
const (
	mutAddEnv                = "add-env"
	mutSetEnv                = "set-env"
	mutAddEnvFrom            = "add-env-from"
	mutAddVolumeMount        = "add-volume-mount"
	mutAddVolume             = "add-volume"
	mutSetLabel              = "set-label"
	mutSetAnnotation         = "set-annotation"
	mutSetPodSecurityContext = "set-pod-security-context"
	mutJSONPatch             = "json-patch"
)

// mutationFields lists the fields each mutation kind takes; "op" is implied. The
// container mutations take exactly one of "container" and "containers" (checked by
// mutator.targets).
var mutationFields = map[string][]string{
	mutAddEnv:                {"container", "containers", "initContainer", "env"},
	mutSetEnv:                {"container", "containers", "initContainer", "env"},
	mutAddEnvFrom:            {"container", "containers", "initContainer", "envFrom"},
	mutAddVolumeMount:        {"container", "containers", "initContainer", "volumeMount"},
	mutAddVolume:             {"volume", "position"},
	mutSetLabel:              {"key", "value"},
	mutSetAnnotation:         {"key", "value"},
	mutSetPodSecurityContext: {"securityContext"},
	mutJSONPatch:             {"patch"},
}

// optionalFields may be left out.
var optionalFields = map[string]bool{"position": true, "initContainer": true, "container": true, "containers": true}

// mutationList turns a rule's value (array or set, as decoded JSON) into mutation
// objects, or says why it cannot.
func mutationList(v any) ([]map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("the rule must return an array or a set of mutations, got %s", jsonKind(v))
	}
	out := make([]map[string]any, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("mutation %d: must be an object with an \"op\", got %s", i, jsonKind(e))
		}
		out[i] = m
	}
	return out, nil
}

// applied is what one mutation did: its patch operations and a line for the trace.
type applied struct {
	ops         []Op
	description string
}

// mutator applies one policy's mutations to the working pod, checking each resulting
// operation against the bundle's guardrails before applying it.
type mutator struct {
	doc   map[string]any
	guard *guard
	// describe asks for the human descriptions of the trace (explain); formatting
	// them for every admission would be waste.
	describe bool
}

// describef formats a description when they are wanted.
func (mu *mutator) describef(format string, args ...any) string {
	if !mu.describe {
		return ""
	}
	return fmt.Sprintf(format, args...)
}

// apply translates mutation m into patch operations against the pod as it is now,
// checks and applies them. On error the pod may hold some of m's operations; the
// caller works on a copy when it needs to undo a policy.
func (mu *mutator) apply(m map[string]any) (applied, error) {
	kind, _ := m["op"].(string)
	fields, known := mutationFields[kind]
	if !known {
		return applied{}, fmt.Errorf("unknown op %q (one of %s)", m["op"], strings.Join(slices.Sorted(maps.Keys(mutationFields)), ", "))
	}
	for k := range m {
		if k != "op" && !slices.Contains(fields, k) {
			return applied{}, fmt.Errorf("%s: unknown field %q (fields: %s)", kind, k, strings.Join(fields, ", "))
		}
	}
	for _, f := range fields {
		if _, ok := m[f]; !ok && !optionalFields[f] {
			return applied{}, fmt.Errorf("%s: missing field %q", kind, f)
		}
	}
	var (
		ops  []Op
		desc string
		err  error
	)
	switch kind {
	case mutAddEnv, mutAddEnvFrom:
		ops, desc, err = mu.appendToContainer(m, kind)
	case mutSetEnv:
		ops, desc, err = mu.setEnv(m)
	case mutAddVolumeMount:
		ops, desc, err = mu.addVolumeMount(m)
	case mutAddVolume:
		ops, desc, err = mu.addVolume(m)
	case mutSetLabel, mutSetAnnotation:
		ops, desc, err = mu.setMetadata(m, kind)
	case mutSetPodSecurityContext:
		ops, desc, err = mu.setSecurityContext(m)
	case mutJSONPatch:
		ops, desc, err = mu.jsonPatch(m)
	}
	if err != nil {
		return applied{ops: ops}, fmt.Errorf("%s: %w", kind, err)
	}
	return applied{ops: ops, description: desc}, nil
}

// emit checks and applies one op now, so that the next op of the same mutation is
// computed against the pod it will really apply to.
func (mu *mutator) emit(ops *[]Op, op Op) error {
	segs := op.segs
	if segs == nil {
		var err error
		if segs, err = splitPointer(op.Path); err != nil {
			return err
		}
	}
	op.segs = nil
	if err := mu.guard.checkSegs(op, segs, mu.doc); err != nil {
		return err
	}
	if err := applySegs(mu.doc, segs, op); err != nil {
		return err
	}
	*ops = append(*ops, op)
	return nil
}

// target is one container a mutation changes: where it is and its object.
type target struct {
	list  string // "containers" or "initContainers"
	index int
	c     map[string]any
}

// targets finds the containers a mutation names: "container" (one name) or
// "containers" (an array of names, possibly empty: the same change to each, in order).
func (mu *mutator) targets(m map[string]any) ([]target, error) {
	one, hasOne := m["container"]
	many, hasMany := m["containers"]
	if hasOne == hasMany {
		return nil, fmt.Errorf("needs exactly one of \"container\" (a name) and \"containers\" (an array of names)")
	}
	init, err := initContainerFlag(m)
	if err != nil {
		return nil, err
	}
	if hasOne {
		name, ok := one.(string)
		if !ok || name == "" {
			return nil, fmt.Errorf("\"container\" must be a container name, got %v", one)
		}
		t, err := mu.container(name, init)
		if err != nil {
			return nil, err
		}
		return []target{t}, nil
	}
	names, ok := many.([]any)
	if !ok {
		return nil, fmt.Errorf("\"containers\" must be an array of container names, got %s", jsonKind(many))
	}
	out := make([]target, 0, len(names))
	for i, n := range names {
		name, ok := n.(string)
		if !ok || name == "" {
			return nil, fmt.Errorf("\"containers\"[%d] must be a container name, got %v", i, n)
		}
		t, err := mu.container(name, init)
		if err != nil {
			return nil, fmt.Errorf("\"containers\"[%d]: %w", i, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// initContainerFlag reads the optional "initContainer" boolean.
func initContainerFlag(m map[string]any) (bool, error) {
	v, present := m["initContainer"]
	if !present {
		return false, nil
	}
	init, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("\"initContainer\" must be a boolean, got %s", jsonKind(v))
	}
	return init, nil
}

// container finds a container by name: a regular container first, then an init
// container; only init containers when init is set (names are unique in a valid pod,
// but upstream's fixtures include a pod that reuses one).
func (mu *mutator) container(name string, init bool) (target, error) {
	lists := []string{"containers", "initContainers"}
	if init {
		lists = lists[1:]
	}
	for _, list := range lists {
		items, _ := lookup(mu.doc, "spec", list)
		arr, _ := items.([]any)
		for i, item := range arr {
			if obj, ok := item.(map[string]any); ok && obj["name"] == name {
				return target{list: list, index: i, c: obj}, nil
			}
		}
	}
	return target{}, fmt.Errorf("no container or init container named %q", name)
}

func objectList(v any, what string) ([]any, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%q must be an array, got %s", what, jsonKind(v))
	}
	for i, e := range list {
		if _, ok := e.(map[string]any); !ok {
			return nil, fmt.Errorf("%s[%d] must be an object, got %s", what, i, jsonKind(e))
		}
	}
	return list, nil
}

func namedObject(v any, what string) (map[string]any, string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("%q must be an object, got %s", what, jsonKind(v))
	}
	name, ok := obj["name"].(string)
	if !ok || name == "" {
		return nil, "", fmt.Errorf("%q needs a non-empty \"name\"", what)
	}
	return obj, name, nil
}

// appendItems appends items to a container's list field: one add of the whole list
// when the field is absent, else one add per item at the end. Never a replace. The
// ops go to the end of *ops (the caller's, sized for all its containers).
func (mu *mutator) appendItems(ops *[]Op, list string, index int, c map[string]any, field string, items []any) error {
	idx := strconv.Itoa(index)
	if existing, ok := c[field]; !ok || existing == nil {
		if len(items) == 0 {
			return nil
		}
		return mu.emit(ops, newOp("add", items, "spec", list, idx, field))
	}
	// Every item is added at the same path: built once, shared by the ops (emit and
	// the guard only read an op's segments).
	at := newOp("add", nil, "spec", list, idx, field, "-")
	for _, it := range items {
		at.Value = it
		if err := mu.emit(ops, at); err != nil {
			return err
		}
	}
	return nil
}

func (mu *mutator) appendToContainer(m map[string]any, kind string) ([]Op, string, error) {
	field := "env"
	if kind == mutAddEnvFrom {
		field = "envFrom"
	}
	targets, err := mu.targets(m)
	if err != nil {
		return nil, "", err
	}
	items, err := objectList(m[field], field)
	if err != nil {
		return nil, "", err
	}
	if field == "env" {
		for i, e := range items {
			if _, _, err := namedObject(e, fmt.Sprintf("env[%d]", i)); err != nil {
				return nil, "", err
			}
		}
	}
	ops := make([]Op, 0, len(targets)*len(items))
	for _, t := range targets {
		if err := mu.appendItems(&ops, t.list, t.index, t.c, field, items); err != nil {
			return ops, "", err
		}
	}
	if !mu.describe {
		return ops, "", nil
	}
	return ops, fmt.Sprintf("%s: add %s %s", describeTargets(targets), field, describeItems(items)), nil
}

func (mu *mutator) setEnv(m map[string]any) ([]Op, string, error) {
	targets, err := mu.targets(m)
	if err != nil {
		return nil, "", err
	}
	items, err := objectList(m["env"], "env")
	if err != nil {
		return nil, "", err
	}
	entries := make([]map[string]any, len(items))
	names := make([]string, len(items))
	for i, it := range items {
		if entries[i], names[i], err = namedObject(it, fmt.Sprintf("env[%d]", i)); err != nil {
			return nil, "", err
		}
	}
	var ops []Op
	var descs []string
	for _, t := range targets {
		more, changed, err := mu.setContainerEnv(t, entries, names)
		ops = append(ops, more...)
		if err != nil {
			return ops, "", err
		}
		switch {
		case !mu.describe:
		case len(changed) == 0:
			descs = append(descs, fmt.Sprintf("container %q: env already set", t.c["name"]))
		default:
			descs = append(descs, fmt.Sprintf("container %q: set env %s", t.c["name"], describeItems(changed)))
		}
	}
	return ops, strings.Join(descs, "; "), nil
}

// setContainerEnv sets each entry in one container: replaced in place when an entry of
// that name differs, appended when there is none. It returns the entries it changed.
func (mu *mutator) setContainerEnv(t target, entries []map[string]any, names []string) ([]Op, []any, error) {
	var ops []Op
	var changed []any
	c := t.c
	for i, entry := range entries {
		var err error
		if c["env"], err = materialized(c["env"]); err != nil {
			return ops, changed, err
		}
		existing, _ := c["env"].([]any)
		pos := -1
		for j, e := range existing {
			if obj, ok := e.(map[string]any); ok && obj["name"] == names[i] {
				pos = j
			}
		}
		switch {
		case pos >= 0 && reflect.DeepEqual(existing[pos], entry):
			continue
		case pos >= 0:
			err = mu.emit(&ops, newOp("replace", entry, "spec", t.list, strconv.Itoa(t.index), "env", strconv.Itoa(pos)))
		default:
			err = mu.appendItems(&ops, t.list, t.index, c, "env", []any{entry})
			// appendItems may have created the env list; see it for the next entry.
			c, _ = mustContainer(mu.doc, t.list, t.index)
		}
		if err != nil {
			return ops, changed, err
		}
		changed = append(changed, entry)
	}
	return ops, changed, nil
}

// describeTargets names the containers of a mutation for the trace.
func describeTargets(targets []target) string {
	switch len(targets) {
	case 0:
		return "no containers"
	case 1:
		return fmt.Sprintf("container %q", targets[0].c["name"])
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = strconv.Quote(fmt.Sprint(t.c["name"]))
	}
	return "containers " + strings.Join(names, ", ")
}

func mustContainer(doc map[string]any, list string, index int) (map[string]any, bool) {
	v, ok := lookup(doc, "spec", list, strconv.Itoa(index))
	c, _ := v.(map[string]any)
	return c, ok
}

func (mu *mutator) addVolumeMount(m map[string]any) ([]Op, string, error) {
	targets, err := mu.targets(m)
	if err != nil {
		return nil, "", err
	}
	mount, name, err := namedObject(m["volumeMount"], "volumeMount")
	if err != nil {
		return nil, "", err
	}
	ops := make([]Op, 0, len(targets))
	for _, t := range targets {
		if err := mu.appendItems(&ops, t.list, t.index, t.c, "volumeMounts", []any{mount}); err != nil {
			return ops, "", err
		}
	}
	if !mu.describe {
		return ops, "", nil
	}
	return ops, fmt.Sprintf("%s: add volumeMount %s at %v", describeTargets(targets), name, mount["mountPath"]), nil
}

func (mu *mutator) addVolume(m map[string]any) ([]Op, string, error) {
	vol, name, err := namedObject(m["volume"], "volume")
	if err != nil {
		return nil, "", err
	}
	position := "last"
	if p, ok := m["position"]; ok {
		if position, ok = p.(string); !ok || (position != "first" && position != "last") {
			return nil, "", fmt.Errorf("\"position\" must be \"first\" or \"last\", got %v", p)
		}
	}
	spec, ok := mu.doc["spec"].(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("the pod has no spec")
	}
	var ops []Op
	existing, present := spec["volumes"]
	vols, _ := existing.([]any)
	for _, v := range vols {
		if obj, ok := v.(map[string]any); ok && obj["name"] == name {
			return nil, "", fmt.Errorf("the pod already has a volume named %q (check for it before adding)", name)
		}
	}
	desc := mu.describef("add volume %s (%s)", name, position)
	switch {
	case !present || existing == nil:
		err = mu.emit(&ops, newOp("add", []any{vol}, "spec", "volumes"))
	case position == "first":
		err = mu.emit(&ops, newOp("add", vol, "spec", "volumes", "0"))
	default:
		err = mu.emit(&ops, newOp("add", vol, "spec", "volumes", "-"))
	}
	return ops, desc, err
}

func (mu *mutator) setMetadata(m map[string]any, kind string) ([]Op, string, error) {
	field := "labels"
	if kind == mutSetAnnotation {
		field = "annotations"
	}
	key, ok := m["key"].(string)
	if !ok || key == "" {
		return nil, "", fmt.Errorf("\"key\" must be a non-empty string")
	}
	value, ok := m["value"].(string)
	if !ok {
		return nil, "", fmt.Errorf("\"value\" must be a string, got %s", jsonKind(m["value"]))
	}
	desc := mu.describef("set %s %s=%s", strings.TrimSuffix(field, "s"), key, value)
	meta, ok := mu.doc["metadata"].(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("the pod has no metadata")
	}
	var ops []Op
	existing, present := meta[field].(map[string]any)
	if !present {
		return ops, desc, mu.emit(&ops, newOp("add", map[string]any{key: value}, "metadata", field))
	}
	if cur, ok := existing[key]; ok && cur == value {
		return nil, mu.describef("%s (already set)", desc), nil
	}
	return ops, desc, mu.emit(&ops, newOp("add", value, "metadata", field, key))
}

func (mu *mutator) setSecurityContext(m map[string]any) ([]Op, string, error) {
	sc, ok := m["securityContext"].(map[string]any)
	if !ok || len(sc) == 0 {
		return nil, "", fmt.Errorf("\"securityContext\" must be a non-empty object")
	}
	keys := slices.Sorted(maps.Keys(sc))
	desc := ""
	if mu.describe {
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%v", k, sc[k])
		}
		desc = "set pod securityContext " + strings.Join(parts, ", ")
	}
	spec, ok := mu.doc["spec"].(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("the pod has no spec")
	}
	var ops []Op
	existing, present := spec["securityContext"].(map[string]any)
	if !present {
		return ops, desc, mu.emit(&ops, newOp("add", sc, "spec", "securityContext"))
	}
	for _, k := range keys {
		if cur, ok := existing[k]; ok && reflect.DeepEqual(cur, sc[k]) {
			continue
		}
		if err := mu.emit(&ops, newOp("add", sc[k], "spec", "securityContext", k)); err != nil {
			return ops, desc, err
		}
	}
	return ops, desc, nil
}

func (mu *mutator) jsonPatch(m map[string]any) ([]Op, string, error) {
	list, ok := m["patch"].([]any)
	if !ok {
		return nil, "", fmt.Errorf("\"patch\" must be an array of RFC 6902 operations")
	}
	var ops []Op
	var paths []string
	for i, e := range list {
		obj, ok := e.(map[string]any)
		if !ok {
			return ops, "", fmt.Errorf("patch[%d] must be an object", i)
		}
		op := Op{}
		op.Op, _ = obj["op"].(string)
		op.Path, ok = obj["path"].(string)
		if !ok {
			return ops, "", fmt.Errorf("patch[%d]: \"path\" must be a string", i)
		}
		for k := range obj {
			if k != "op" && k != "path" && k != "value" {
				return ops, "", fmt.Errorf("patch[%d]: unsupported field %q (move and copy are not supported)", i, k)
			}
		}
		if op.Op != "remove" {
			if _, ok := obj["value"]; !ok {
				return ops, "", fmt.Errorf("patch[%d]: %q needs a \"value\"", i, op.Op)
			}
		}
		op.Value = obj["value"]
		if err := mu.emit(&ops, op); err != nil {
			return ops, "", fmt.Errorf("patch[%d]: %w", i, err)
		}
		paths = append(paths, op.Op+" "+op.Path)
	}
	return ops, mu.describef("json-patch %s", strings.Join(paths, ", ")), nil
}

// describeItems lists env entries as NAME=value, other items by name.
func describeItems(items []any) string {
	parts := make([]string, 0, len(items))
	for _, it := range items {
		obj, _ := it.(map[string]any)
		name, _ := obj["name"].(string)
		switch {
		case name != "" && obj["value"] != nil:
			parts = append(parts, fmt.Sprintf("%s=%v", name, obj["value"]))
		case name != "" && obj["valueFrom"] != nil:
			parts = append(parts, name+" (valueFrom)")
		case name != "":
			parts = append(parts, name)
		default:
			parts = append(parts, "{"+strings.Join(slices.Sorted(maps.Keys(obj)), ",")+"}")
		}
	}
	return strings.Join(parts, ", ")
}
