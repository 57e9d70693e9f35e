package engine

import (
	"encoding/json"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Request is everything the engine needs to decide about one pod. See docs/policies.md,
// "The input document", for how each field appears to policies.
type Request struct {
	// Object is the pod as JSON (required). OldObject is the old pod, nil on CREATE.
	Object    []byte
	OldObject []byte
	// Attributes are the admission request's attributes.
	Attributes Attributes
	// ServiceAccount is the pod's ServiceAccount, nil when it was not found.
	ServiceAccount *ServiceAccount
	// Namespace is the pod's Namespace, nil when not available.
	Namespace *NamespaceObject
	// Identities is what the cluster sources say about the pod's ServiceAccount.
	Identities Identities
	// Scan, when set, is Object already cut by this program (Program.Scan): Evaluate
	// uses it instead of scanning Object again. A scan by another program, or of
	// other bytes, is ignored.
	Scan *PodScan
}

// Attributes of an admission request, as policies see them in `request`.
type Attributes struct {
	UID         string
	Kind        GroupVersionKind
	Resource    GroupVersionResource
	SubResource string
	Name        string
	Namespace   string
	Operation   string
	UserInfo    UserInfo
	DryRun      bool
}

// GroupVersionKind names a kind.
type GroupVersionKind struct{ Group, Version, Kind string }

// GroupVersionResource names a resource.
type GroupVersionResource struct{ Group, Version, Resource string }

// UserInfo is the requesting user.
type UserInfo struct {
	Username string
	UID      string
	Groups   []string
}

// PodCreate returns the attributes of a pod CREATE in namespace; eval uses it when it
// is given a bare pod rather than an AdmissionReview.
func PodCreate(namespace, name string) Attributes {
	return Attributes{
		Kind:      GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  GroupVersionResource{Version: "v1", Resource: "pods"},
		Name:      name,
		Namespace: namespace,
		Operation: "CREATE",
	}
}

// ServiceAccount is the part of a ServiceAccount policies may read. Treat it as
// immutable once used: its policy input is computed once and kept (the informer cache
// hands the same pointer to every pod of one ServiceAccount version).
type ServiceAccount struct {
	Name            string
	Namespace       string
	UID             string
	ResourceVersion string
	Labels          map[string]string
	Annotations     map[string]string

	// input caches the policy input; one pointer, since a cluster's every
	// ServiceAccount is held in memory and most are never used by a pod.
	cachedInput atomic.Pointer[serviceAccountInput]
}

type serviceAccountInput struct {
	m   map[string]any
	v   ast.Value
	key []byte // its part of memo keys
}

// input returns the ServiceAccount as the policy input holds it, for CEL and Rego.
func (sa *ServiceAccount) input() (map[string]any, ast.Value) {
	in := sa.cached()
	return in.m, in.v
}

// keyBytes returns the ServiceAccount's part of memo keys.
func (sa *ServiceAccount) keyBytes() []byte { return sa.cached().key }

// cached computes what is kept per ServiceAccount version on first use. Two first
// uses at once may both compute it; they compute the same thing.
func (sa *ServiceAccount) cached() *serviceAccountInput {
	in := sa.cachedInput.Load()
	if in == nil {
		m := sa.toMap().(map[string]any)
		in = &serviceAccountInput{m: m, v: mustValue(m), key: serviceAccountKey(sa)}
		sa.cachedInput.Store(in)
	}
	return in
}

// NamespaceObject is the part of a Namespace policies may read.
type NamespaceObject struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// Identities is what the cluster sources say about one ServiceAccount.
type Identities struct {
	// ContainerCredentials is set when (namespace, ServiceAccount) is listed in the
	// container-credentials identities file.
	ContainerCredentials *ContainerCredentialsIdentity
	// ConfigMap is the kOps pod-identity-webhook ConfigMap entry for the ServiceAccount.
	ConfigMap *ConfigMapEntry
}

// ContainerCredentialsIdentity is one entry of the identities file.
type ContainerCredentialsIdentity struct {
	Namespace      string
	ServiceAccount string
}

// ConfigMapEntry is one entry of the kOps pod-identity-webhook ConfigMap.
type ConfigMapEntry struct {
	Key             string // the key that matched: "<ns>/<name>" or "*/<name>"
	Wildcard        bool   // true when Key is a "*/<name>" key
	RoleARN         string
	Audience        string
	UseRegionalSTS  bool
	TokenExpiration int64 // raw; 0 when absent
}

func (a Attributes) toMap() map[string]any {
	groups := make([]any, len(a.UserInfo.Groups))
	for i, g := range a.UserInfo.Groups {
		groups[i] = g
	}
	return map[string]any{
		"uid":         a.UID,
		"kind":        map[string]any{"group": a.Kind.Group, "version": a.Kind.Version, "kind": a.Kind.Kind},
		"resource":    map[string]any{"group": a.Resource.Group, "version": a.Resource.Version, "resource": a.Resource.Resource},
		"subResource": a.SubResource,
		"name":        a.Name,
		"namespace":   a.Namespace,
		"operation":   a.Operation,
		"userInfo":    map[string]any{"username": a.UserInfo.Username, "uid": a.UserInfo.UID, "groups": groups},
		"dryRun":      a.DryRun,
	}
}

func (sa *ServiceAccount) toMap() any {
	if sa == nil {
		return nil
	}
	meta := map[string]any{
		"name":            sa.Name,
		"namespace":       sa.Namespace,
		"uid":             sa.UID,
		"resourceVersion": sa.ResourceVersion,
		"labels":          stringMap(sa.Labels),
		"annotations":     stringMap(sa.Annotations),
	}
	return map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
}

func (ns *NamespaceObject) toMap() any {
	if ns == nil {
		return nil
	}
	meta := map[string]any{
		"name":        ns.Name,
		"labels":      stringMap(ns.Labels),
		"annotations": stringMap(ns.Annotations),
	}
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
}

func (id Identities) toMap() map[string]any {
	m := map[string]any{"containerCredentials": nil, "configMap": nil}
	if cc := id.ContainerCredentials; cc != nil {
		m["containerCredentials"] = map[string]any{"namespace": cc.Namespace, "serviceAccount": cc.ServiceAccount}
	}
	if e := id.ConfigMap; e != nil {
		m["configMap"] = map[string]any{
			"key":             e.Key,
			"wildcard":        e.Wildcard,
			"roleARN":         e.RoleARN,
			"audience":        e.Audience,
			"useRegionalSTS":  e.UseRegionalSTS,
			"tokenExpiration": e.TokenExpiration,
		}
	}
	return m
}

// Rego values of the fixed inputs, built directly rather than by converting toMap's
// maps (every matched request builds them): TestFixedInputValues checks they are
// the same values.

// requestFields are the fields of input.request, in the order toValue builds them.
var requestFields = []string{"uid", "kind", "resource", "subResource", "name", "namespace", "operation", "userInfo", "dryRun"}

// toValue builds input.request for Rego with the given fields only (nil: all of
// them): a program's rules usually read one or two (the default bundle only the
// namespace), and building the rest cost microseconds per request.
func (a Attributes) toValue(fields []string) ast.Value {
	if fields == nil {
		fields = requestFields
	}
	obj := ast.NewObjectWithCapacity(len(fields))
	for _, f := range fields {
		var item [2]*ast.Term
		switch f {
		case "uid":
			item = stringItem("uid", a.UID)
		case "kind":
			item = ast.Item(ast.StringTerm("kind"), ast.ObjectTerm(stringItem("group", a.Kind.Group), stringItem("version", a.Kind.Version), stringItem("kind", a.Kind.Kind)))
		case "resource":
			item = ast.Item(ast.StringTerm("resource"), ast.ObjectTerm(stringItem("group", a.Resource.Group), stringItem("version", a.Resource.Version), stringItem("resource", a.Resource.Resource)))
		case "subResource":
			item = stringItem("subResource", a.SubResource)
		case "name":
			item = stringItem("name", a.Name)
		case "namespace":
			item = stringItem("namespace", a.Namespace)
		case "operation":
			item = stringItem("operation", a.Operation)
		case "userInfo":
			groups := make([]*ast.Term, len(a.UserInfo.Groups))
			for i, g := range a.UserInfo.Groups {
				groups[i] = ast.StringTerm(g)
			}
			item = ast.Item(ast.StringTerm("userInfo"), ast.ObjectTerm(stringItem("username", a.UserInfo.Username), stringItem("uid", a.UserInfo.UID),
				ast.Item(ast.StringTerm("groups"), ast.ArrayTerm(groups...))))
		case "dryRun":
			item = ast.Item(ast.StringTerm("dryRun"), ast.BooleanTerm(a.DryRun))
		default:
			continue
		}
		obj.Insert(item[0], item[1])
	}
	return obj
}

func (ns *NamespaceObject) toValue() ast.Value {
	if ns == nil {
		return ast.Null{}
	}
	return ast.NewObject(
		stringItem("apiVersion", "v1"),
		stringItem("kind", "Namespace"),
		ast.Item(ast.StringTerm("metadata"), ast.ObjectTerm(stringItem("name", ns.Name),
			ast.Item(ast.StringTerm("labels"), ast.NewTerm(stringMapValue(ns.Labels))),
			ast.Item(ast.StringTerm("annotations"), ast.NewTerm(stringMapValue(ns.Annotations))))),
	)
}

func (id Identities) toValue() ast.Value {
	cc, cm := ast.NullTerm(), ast.NullTerm()
	if c := id.ContainerCredentials; c != nil {
		cc = ast.ObjectTerm(stringItem("namespace", c.Namespace), stringItem("serviceAccount", c.ServiceAccount))
	}
	if e := id.ConfigMap; e != nil {
		cm = ast.ObjectTerm(
			stringItem("key", e.Key),
			ast.Item(ast.StringTerm("wildcard"), ast.BooleanTerm(e.Wildcard)),
			stringItem("roleARN", e.RoleARN),
			stringItem("audience", e.Audience),
			ast.Item(ast.StringTerm("useRegionalSTS"), ast.BooleanTerm(e.UseRegionalSTS)),
			ast.Item(ast.StringTerm("tokenExpiration"), ast.IntNumberTerm(int(e.TokenExpiration))),
		)
	}
	return ast.NewObject(ast.Item(ast.StringTerm("containerCredentials"), cc), ast.Item(ast.StringTerm("configMap"), cm))
}

// stringItem is a key and a string value; the keys of the fixed inputs are terms
// built once (inputKeyTerms).
func stringItem(k, v string) [2]*ast.Term {
	key, ok := inputKeyTerms[k]
	if !ok {
		key = ast.StringTerm(k)
	}
	return ast.Item(key, ast.StringTerm(v))
}

var inputKeyTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"uid", "group", "version", "kind", "resource", "subResource", "name", "namespace", "operation",
		"username", "apiVersion", "serviceAccount", "key", "roleARN", "audience"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func stringMapValue(m map[string]string) ast.Value {
	obj := ast.NewObjectWithCapacity(len(m))
	for k, v := range m {
		obj.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	return obj
}

// stringMap gives policies an empty object rather than null for absent maps, so that
// `key in serviceAccount.metadata.annotations` never fails on a missing map.
func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// mustValue converts a Go value built from JSON types into a Rego value. Inputs come
// from our own decoder, so a conversion failure is a programming error.
func mustValue(v any) ast.Value {
	val, err := ast.InterfaceToValue(v)
	if err != nil {
		panic("engine: converting input to Rego: " + err.Error())
	}
	return val
}

// regoResult is the rego.GenerateJSON of policy rules: a Rego value as the Go values
// of decoded JSON, numbers already int64 when whole (what normalizeNumbers does to
// OPA's own conversion, here in the same walk), sets as arrays in their order, and
// object keys that are not strings as their JSON, as OPA writes them.
func regoResult(t *ast.Term, _ *rego.EvalContext) (any, error) { return regoToGo(t.Value) }

func regoToGo(v ast.Value) (any, error) {
	switch t := v.(type) {
	case ast.Null:
		return nil, nil
	case ast.Boolean:
		return bool(t), nil
	case ast.Number:
		return normalizeNumbers(json.Number(t)), nil
	case ast.String:
		return string(t), nil
	case *ast.Array:
		out := make([]any, t.Len())
		for i := range t.Len() {
			e, err := regoToGo(t.Elem(i).Value)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case ast.Set:
		out := make([]any, 0, t.Len())
		err := t.Iter(func(x *ast.Term) error {
			e, err := regoToGo(x.Value)
			out = append(out, e)
			return err
		})
		return out, err
	case ast.Object:
		out := make(map[string]any, t.Len())
		err := t.Iter(func(k, x *ast.Term) error {
			key, ok := k.Value.(ast.String)
			if !ok {
				kv, err := regoToGo(k.Value)
				if err != nil {
					return err
				}
				enc, err := json.Marshal(kv)
				if err != nil {
					return err
				}
				key = ast.String(enc)
			}
			e, err := regoToGo(x.Value)
			out[string(key)] = e
			return err
		})
		return out, err
	}
	return ast.JSON(v) // anything else (never in a rule's value): as OPA converts it
}
