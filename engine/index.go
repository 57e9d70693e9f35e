package engine

import "github.com/open-policy-agent/opa/v1/ast"

// varIndex is the input field holding the pod's index.
const varIndex = "index"

// buildIndex builds input.index, a precomputed view of the pod for fast policies (see
// docs/policies.md): every init container, then every container, as
// {list, index, name, env: set of env var names, mounts: set of volume mount names},
// and the set of the pod's volume names. Rego builds such sets slowly, one
// comprehension per container and check; here they cost a few microseconds.
func buildIndex(doc map[string]any) ast.Value {
	var entries []*ast.Term
	for _, list := range []string{"initContainers", "containers"} {
		items, _ := lookup(doc, "spec", list)
		arr, _ := items.([]any)
		for i, item := range arr {
			c, ok := item.(map[string]any)
			if !ok {
				continue
			}
			name, _ := c["name"].(string)
			entries = append(entries, ast.ObjectTerm(
				ast.Item(indexKeys.list, listTerms[list]),
				ast.Item(indexKeys.index, ast.InternedTerm(i)),
				ast.Item(indexKeys.name, ast.StringTerm(name)),
				ast.Item(indexKeys.env, nameSet(c["env"])),
				ast.Item(indexKeys.mounts, nameSet(c["volumeMounts"])),
			))
		}
	}
	vols, _ := lookup(doc, "spec", "volumes")
	return ast.NewObject(
		ast.Item(indexKeys.containers, ast.ArrayTerm(entries...)),
		ast.Item(indexKeys.volumes, nameSet(vols)),
	)
}

// The index's constant terms, built once and shared by every request's index (Rego
// does not change the terms of its input; OPA shares its own interned terms so too).
var (
	indexKeys = struct{ list, index, name, env, mounts, containers, volumes *ast.Term }{
		ast.StringTerm("list"), ast.StringTerm("index"), ast.StringTerm("name"), ast.StringTerm("env"),
		ast.StringTerm("mounts"), ast.StringTerm("containers"), ast.StringTerm("volumes"),
	}
	listTerms = map[string]*ast.Term{"initContainers": ast.StringTerm("initContainers"), "containers": ast.StringTerm("containers")}
)

// nameSet is the set of the "name" fields of a list of objects. The terms are cut
// from one slab: a pod has dozens of env and mount names, and a term each was a
// tenth of a miss's allocations.
func nameSet(list any) *ast.Term {
	var names []string
	if l, ok := list.(*rawList); ok {
		names, _ = l.names()
	} else {
		arr, _ := list.([]any)
		names = make([]string, 0, len(arr))
		for _, e := range arr {
			if m, ok := e.(map[string]any); ok {
				if n, ok := m["name"].(string); ok {
					names = append(names, n)
				}
			}
		}
	}
	slab := make([]ast.Term, len(names))
	terms := make([]*ast.Term, len(names))
	for i, n := range names {
		slab[i].Value = ast.String(n)
		terms[i] = &slab[i]
	}
	return ast.SetTerm(terms...)
}
