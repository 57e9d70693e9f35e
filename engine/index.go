package engine

import (
	"hash/maphash"
	"unsafe"

	"github.com/open-policy-agent/opa/v1/ast"
	"k8s.io/utils/lru"
)

// varIndex is the input field holding the pod's index.
const varIndex = "index"

// buildIndex builds input.index, a precomputed view of the pod for fast policies (see
// docs/policies.md): every init container, then every container, as
// {list, index, name, env: set of env var names, mounts: set of volume mount names},
// and the set of the pod's volume names. Rego builds such sets slowly, one
// comprehension per container and check; here they cost a few microseconds.
func buildIndex(doc map[string]any, sets *nameSetCache) ast.Value {
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
				ast.Item(indexKeys.env, sets.nameSet(c["env"])),
				ast.Item(indexKeys.mounts, sets.nameSet(c["volumeMounts"])),
			))
		}
	}
	vols, _ := lookup(doc, "spec", "volumes")
	return ast.NewObject(
		ast.Item(indexKeys.containers, ast.ArrayTerm(entries...)),
		ast.Item(indexKeys.volumes, sets.nameSet(vols)),
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

// nameSetCache remembers the name sets of containers' raw env and volumeMount lists
// (see rawList) by their bytes. Pods of one workload repeat the same lists, also
// across templates (a new revision usually changes an image, not the env), and
// decoding the names and building the sets was a twentieth of a miss. A set is the
// same value for the same bytes; Rego never changes its input, so the terms are
// shared by concurrent evaluations. nil caches nothing.
type nameSetCache struct {
	cache *lru.Cache // maphash of the bytes -> nameSetEntry
	seed  maphash.Seed
}

type nameSetEntry struct {
	raw string // the list's bytes, a copy: the request's bytes are reused
	set *ast.Term
}

const (
	// DefaultNameSetCacheSize bounds the cached sets. With maxCachedNameList the cache
	// holds at most ~12 MB (a 4 KiB list of ~100 short entries and its set take ~12
	// KB); lists of the usual dozen env vars take ~2 KB each.
	DefaultNameSetCacheSize = 1024
	maxCachedNameList       = 4 << 10
)

func newNameSetCache(size int) *nameSetCache {
	return &nameSetCache{cache: lru.New(size), seed: maphash.MakeSeed()}
}

// nameSet is the package's nameSet, from the cache for an unchanged raw list.
func (c *nameSetCache) nameSet(list any) *ast.Term {
	l, ok := list.(*rawList)
	if c == nil || !ok || len(l.appended) > 0 || len(l.raw) > maxCachedNameList {
		return nameSet(list)
	}
	h := maphash.Bytes(c.seed, l.raw)
	if v, hit := c.cache.Get(h); hit {
		if e := v.(nameSetEntry); e.raw == string(l.raw) {
			return e.set
		}
	}
	// The set's strings alias the bytes they are decoded from (see rawList.names):
	// built from the copy, so that they outlive the request.
	raw := string(l.raw)
	set := nameSet(&rawList{raw: unsafe.Slice(unsafe.StringData(raw), len(raw))})
	c.cache.Add(h, nameSetEntry{raw: raw, set: set})
	return set
}
