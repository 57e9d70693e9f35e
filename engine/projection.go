package engine

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/open-policy-agent/opa/v1/ast"
)

// projection is the set of paths of the pod that a program's policies can read: a
// trie whose nodes are object keys. A node marked all holds its whole subtree.
//
// It is computed once per generation from the Rego modules and the CEL conditions, and
// lets the engine decode and convert only those parts of each pod: a defaulted pod
// carries managedFields, ownerReferences, tolerations and status that no identity
// policy reads, and converting them to Rego values was most of the engine's cost.
// Anything the analysis cannot follow (the whole input, a dynamic key at the top, the
// object passed to a function) widens the projection, never narrows it.
type projection struct {
	all      bool
	children map[string]*projection
	keys     []string // sorted children keys, see sortedKeys
	// shallow lists arrays of objects (by key) that only the mutation vocabulary
	// needs: each element is decoded in the listed fields only, the others stay raw
	// JSON the engine never looks into. A key also in children is decoded fully.
	shallow     map[string]shallowDecoder
	shallowKeys []string
	// The paths from the root of each key and shallow key, built once (see freeze):
	// the leaves of every split share them.
	keyPaths, shallowPaths [][]string
	leafCount              int // the most leaves a split can produce
}

func newProjection() *projection { return &projection{children: map[string]*projection{}} }

// sortedKeys returns the children's keys in order (see freeze).
func (p *projection) sortedKeys() []string { return p.keys }

// freeze computes the sorted keys of every node once; the projection is read-only
// afterwards and read concurrently on every request.
func (p *projection) freeze() *projection { return p.freezeAt(nil) }

func (p *projection) freezeAt(path []string) *projection {
	p.keys = slices.Sorted(maps.Keys(p.children))
	p.shallowKeys = nil
	for _, k := range slices.Sorted(maps.Keys(p.shallow)) {
		if _, full := p.children[k]; !full && !p.all {
			p.shallowKeys = append(p.shallowKeys, k)
		}
	}
	p.keyPaths, p.shallowPaths, p.leafCount = nil, nil, len(p.shallowKeys)
	for _, k := range p.keys {
		kp := append(path[:len(path):len(path)], k)
		p.keyPaths = append(p.keyPaths, kp)
		c := p.children[k].freezeAt(kp)
		p.leafCount += max(c.leafCount, 1)
	}
	for _, k := range p.shallowKeys {
		p.shallowPaths = append(p.shallowPaths, append(path[:len(path):len(path)], k))
	}
	return p
}

// add marks a path; the empty path marks everything below this node.
func (p *projection) add(path []string) {
	n := p
	for _, k := range path {
		if n.all {
			return
		}
		c, ok := n.children[k]
		if !ok {
			c = newProjection()
			n.children[k] = c
		}
		n = c
	}
	n.all = true
	n.children = map[string]*projection{}
}

// mutatorPaths are what the mutation vocabulary reads and writes: always projected, so
// that a mutation is computed against the real state of what it changes (a label set
// on a pod whose labels were not projected would otherwise replace them all).
var mutatorPaths = [][]string{
	{"metadata", "labels"}, {"metadata", "annotations"}, {"metadata", "name"},
	{"metadata", "generateName"}, {"metadata", "namespace"},
	{"spec", "securityContext"}, {"spec", "serviceAccountName"},
}

// mutatorShallow are the lists the vocabulary reads element by element: a container's
// name and the lists it appends to, a volume's name (and its source type, which the
// guard reads from the keys).
var mutatorShallow = map[string]shallowDecoder{
	"containers":     decodeContainersShallow,
	"initContainers": decodeContainersShallow,
	"volumes":        decodeVolumesShallow,
}

// projectionsFor analyses a generation. It returns what of the pod to decode (what the
// mutation vocabulary needs, what CEL conditions read, the granted paths, and what the
// Rego rules read) and, within that, what to convert into the Rego input: only what
// the rules admission evaluates (the policies' rules and the declared ServiceAccount
// rules) can reach through the rule dependency graph. A notes rule that reads whole
// containers therefore costs nothing at admission; explain mode decodes the whole pod.
func projectionsFor(c *ast.Compiler, bundles []*Bundle, policies []*compiledPolicy) (decode, rego *projection, requestFields []string) {
	rego = newProjection()
	var roots []ast.Ref
	for _, cp := range policies {
		roots = append(roots, ast.MustParseRef(cp.Policy.Rule))
	}
	parsed := map[string]*ast.Rule{}
	for _, b := range bundles {
		for _, r := range b.Manifest.ServiceAccountRules {
			roots = append(roots, ast.MustParseRef(r))
		}
		for _, m := range b.Modules {
			for _, r := range m.Parsed.Rules {
				for e := r; e != nil; e = e.Else { // else branches are rules of their own
					parsed[locationKey(e.Location)] = e
				}
			}
		}
	}
	request := newProjection()
	for _, r := range reachableRules(c, roots) {
		if pr, ok := parsed[locationKey(r.Location)]; ok {
			addRegoRefs(rego, pr, varObject)
		} else {
			addRegoRefs(rego, r, varObject) // compiled form: coarser, never narrower
		}
		// The request's fields only at the top level (Attributes.toValue builds them
		// whole), from the compiled form.
		addRegoRefs(request, r, varRequest)
	}
	if !request.all {
		requestFields = slices.Sorted(maps.Keys(request.children))
		if requestFields == nil {
			requestFields = []string{}
		}
	}

	decode = newProjection()
	for _, path := range mutatorPaths {
		decode.add(path)
	}
	spec := decode.children["spec"]
	spec.shallow = mutatorShallow
	for _, b := range bundles {
		for _, g := range b.Manifest.Grants.Paths {
			var prefix []string
			for _, seg := range strings.Split(strings.TrimPrefix(g, "/"), "/") {
				if seg == "*" || seg == "**" {
					break
				}
				prefix = append(prefix, seg)
			}
			decode.add(prefix)
		}
	}
	for _, cp := range policies {
		for _, cond := range cp.conditions {
			for _, path := range cond.objectPaths {
				decode.add(path)
			}
		}
	}
	decode.merge(rego, nil)
	return decode.freeze(), rego.freeze(), requestFields
}

// reachableRules returns every compiled rule the roots can reach.
func reachableRules(c *ast.Compiler, roots []ast.Ref) []*ast.Rule {
	seen := map[*ast.Rule]bool{}
	var queue, out []*ast.Rule
	for _, r := range roots {
		queue = append(queue, c.GetRules(r)...)
	}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if seen[r] {
			continue
		}
		seen[r] = true
		out = append(out, r)
		for dep := range c.Graph.Dependencies(r) {
			if dr, ok := dep.(*ast.Rule); ok {
				queue = append(queue, dr)
			}
		}
	}
	return out
}

func locationKey(l *ast.Location) string {
	if l == nil {
		return ""
	}
	return l.File + ":" + strconv.Itoa(l.Row) + ":" + strconv.Itoa(l.Col)
}

// merge adds every path of other below the given prefix.
func (p *projection) merge(other *projection, prefix []string) {
	if other.all {
		p.add(prefix)
		return
	}
	for k, c := range other.children {
		p.merge(c, append(append([]string{}, prefix...), k))
	}
}

// reachesContainers says the projection holds some of the pod's containers or init
// containers (or more).
func (p *projection) reachesContainers() bool {
	if p.all {
		return true
	}
	spec := p.children["spec"]
	if spec == nil {
		return false
	}
	return spec.all || spec.children["containers"] != nil || spec.children["initContainers"] != nil
}

// allProjection holds the whole pod.
func allProjection() *projection {
	p := newProjection()
	p.add(nil)
	return p.freeze()
}

// project returns the part of doc the projection holds, sharing its subtrees.
func (p *projection) project(doc map[string]any) map[string]any {
	if p.all {
		return doc
	}
	out := make(map[string]any, len(p.children))
	for k, c := range p.children {
		v, ok := doc[k]
		if !ok {
			continue
		}
		if m, isMap := v.(map[string]any); isMap && !c.all {
			out[k] = c.project(m)
		} else {
			out[k] = v
		}
	}
	return out
}

// readsRequestUID reports whether any policy can read the admission request's uid,
// which differs on every request: the results of such a program are not memoised.
func readsRequestUID(bundles []*Bundle, policies []*compiledPolicy) bool {
	for _, b := range bundles {
		for _, m := range b.Modules {
			found := false
			ast.WalkRefs(m.Parsed, func(r ast.Ref) bool {
				if len(r) == 0 || !r[0].Equal(ast.InputRootDocument) {
					return false
				}
				if len(r) == 1 {
					found = true // input used whole
					return true
				}
				key, ok := r[1].Value.(ast.String)
				if !ok {
					found = true
					return true
				}
				if string(key) != varRequest {
					return false
				}
				if len(r) == 2 {
					found = true
					return true
				}
				field, ok := r[2].Value.(ast.String)
				found = found || !ok || string(field) == "uid"
				return found
			})
			if found {
				return true
			}
		}
	}
	for _, cp := range policies {
		for _, c := range cp.conditions {
			for _, path := range c.requestPaths {
				if len(path) == 0 || path[0] == "uid" {
					return true
				}
			}
		}
	}
	return false
}

// addRegoRefs adds the paths under input.<root> (input.object, input.request) that a
// parsed module or a rule reads; input used whole, or with a variable key, adds the
// whole of it. Parsed is the finer: compilation rewrites object.get(input.object, ...)
// through temporaries.
func addRegoRefs(p *projection, m any, root string) {
	var vis *ast.GenericVisitor
	objectGet := func(terms []*ast.Term) bool {
		path, ok := objectGetPath(terms, root)
		if !ok {
			return false
		}
		p.add(path)
		for _, arg := range terms[3:] { // the default, or an output var
			vis.Walk(arg)
		}
		return true
	}
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.With:
			vis.Walk(v.Value) // the target is written, not read
			return true
		case ast.Call:
			return objectGet(v)
		case *ast.Expr:
			if terms, ok := v.Terms.([]*ast.Term); ok && v.IsCall() {
				return objectGet(terms)
			}
		case ast.Ref:
			if path, ok := inputPath(v, root); ok {
				p.add(path)
			}
			// Walk the ref's parts but not its head var, which would read as a bare
			// `input`; a call in head position is walked.
			if _, isVar := v[0].Value.(ast.Var); !isVar {
				vis.Walk(v[0])
			}
			for _, t := range v[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				p.add(nil) // input used whole
			}
		}
		return false
	})
	vis.Walk(m)
}

// inputPath returns the constant path under input.<root> that ref reads: for
// input.object.spec.containers[_].env and root "object" it is [spec containers]. It
// reports false for refs that do not start at input.<root>; input alone or input[x]
// give the whole of it.
func inputPath(ref ast.Ref, root string) ([]string, bool) {
	if len(ref) == 0 || !ref[0].Equal(ast.InputRootDocument) {
		return nil, false
	}
	if len(ref) == 1 {
		return nil, true
	}
	first, ok := ref[1].Value.(ast.String)
	if !ok {
		return nil, true // input[x]: could be the root
	}
	if string(first) != root {
		return nil, false
	}
	var path []string
	for _, t := range ref[2:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		path = append(path, string(s))
	}
	return path, true
}

// objectGetPath recognises object.get(input.<root>..., "k" or ["a", "b"], default)
// and returns the full constant path it reads.
func objectGetPath(call []*ast.Term, root string) ([]string, bool) {
	if len(call) < 4 || call[0].String() != "object.get" {
		return nil, false
	}
	ref, ok := call[1].Value.(ast.Ref)
	if !ok {
		return nil, false
	}
	base, ok := inputPath(ref, root)
	if !ok || len(base) != len(ref)-2 { // the ref must be fully constant
		return nil, false
	}
	path := append([]string{}, base...)
	switch key := call[2].Value.(type) {
	case ast.String:
		return append(path, string(key)), true
	case *ast.Array:
		for i := 0; i < key.Len(); i++ {
			s, ok := key.Elem(i).Value.(ast.String)
			if !ok {
				return path, true // dynamic part: everything below the constant prefix
			}
			path = append(path, string(s))
		}
		return path, true
	}
	return path, true
}

// celPaths returns the constant paths under the variable that a checked CEL
// expression reads; an empty path means the whole value.
func celPaths(a *celast.AST, variable string) [][]string {
	var paths [][]string
	var visit func(e celast.Expr, suffix []string)
	visit = func(e celast.Expr, suffix []string) {
		switch e.Kind() {
		case celast.IdentKind:
			if e.AsIdent() == variable {
				paths = append(paths, reverse(suffix))
			}
		case celast.SelectKind:
			sel := e.AsSelect()
			visit(sel.Operand(), append(append([]string{}, suffix...), sel.FieldName()))
		case celast.CallKind:
			call := e.AsCall()
			// object["key"] is an index call with a constant string.
			if call.FunctionName() == "_[_]" && len(call.Args()) == 2 && call.Args()[1].Kind() == celast.LiteralKind {
				if s, ok := call.Args()[1].AsLiteral().Value().(string); ok {
					visit(call.Args()[0], append(append([]string{}, suffix...), s))
					return
				}
			}
			if call.IsMemberFunction() {
				visit(call.Target(), nil)
			}
			for _, arg := range call.Args() {
				visit(arg, nil)
			}
		case celast.ListKind:
			for _, el := range e.AsList().Elements() {
				visit(el, nil)
			}
		case celast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				visit(me.Key(), nil)
				visit(me.Value(), nil)
			}
		case celast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				visit(f.AsStructField().Value(), nil)
			}
		case celast.ComprehensionKind:
			c := e.AsComprehension()
			visit(c.IterRange(), nil)
			visit(c.AccuInit(), nil)
			visit(c.LoopCondition(), nil)
			visit(c.LoopStep(), nil)
			visit(c.Result(), nil)
		}
	}
	visit(a.Expr(), nil)
	return paths
}

// reverse turns the suffix collected from the outside in into a path.
func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// celReferences reports whether a checked CEL expression uses a variable at all.
func celReferences(a *celast.AST, name string) bool {
	found := false
	var visit func(e celast.Expr)
	visit = func(e celast.Expr) {
		if found {
			return
		}
		switch e.Kind() {
		case celast.IdentKind:
			found = e.AsIdent() == name
		case celast.SelectKind:
			visit(e.AsSelect().Operand())
		case celast.CallKind:
			c := e.AsCall()
			if c.IsMemberFunction() {
				visit(c.Target())
			}
			for _, a := range c.Args() {
				visit(a)
			}
		case celast.ListKind:
			for _, el := range e.AsList().Elements() {
				visit(el)
			}
		case celast.MapKind:
			for _, en := range e.AsMap().Entries() {
				visit(en.AsMapEntry().Key())
				visit(en.AsMapEntry().Value())
			}
		case celast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				visit(f.AsStructField().Value())
			}
		case celast.ComprehensionKind:
			c := e.AsComprehension()
			visit(c.IterRange())
			visit(c.AccuInit())
			visit(c.LoopCondition())
			visit(c.LoopStep())
			visit(c.Result())
		}
	}
	visit(a.Expr())
	return found
}
