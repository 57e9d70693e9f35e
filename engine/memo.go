package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"maps"
	"slices"
	"strconv"
	"sync"

	"k8s.io/utils/lru"
)

// DefaultMemoSize is how many results a program remembers: pods created from one
// template (a Deployment's replicas, a Job's pods) share one entry.
const DefaultMemoSize = 4096

// memo remembers the results of whole evaluations, keyed by a hash of everything a
// program's policies can read: the projected pod (as raw JSON), the request's
// attributes except its uid, the ServiceAccount (with its resourceVersion), the
// Namespace, the identities and the old object. The params are fixed per program, and
// the memo lives in the program, so a new generation starts empty.
//
// It is sound because policies are pure: the sandbox forbids clocks, randomness and
// the network, the jitter is a hash of the pod, and a program whose policies read the
// request uid gets no memo. Results in which a policy failed are not remembered, so a
// transient failure (the deadline on a loaded machine) is retried next time.
type memo struct {
	cache *lru.Cache
}

type memoEntry struct {
	patch    []Op
	policies []PolicyTrace
	json     patchJSON // the patch, encoded once for every hit
}

type memoKey [sha256.Size]byte

// errMemoHit stops an evaluation whose result the memo already has.
type errMemoHit struct{ entry *memoEntry }

func (errMemoHit) Error() string { return "memo hit" }

func newMemo(size int) *memo {
	if size <= 0 {
		return nil
	}
	return &memo{cache: lru.New(size)}
}

func (m *memo) get(k memoKey) (*memoEntry, bool) {
	v, ok := m.cache.Get(k)
	if !ok {
		return nil, false
	}
	return v.(*memoEntry), true
}

// put remembers a result in compact form: the patch encoded once (the response's
// bytes, shared with res), and its ops and the policy traces referring to slices of
// those bytes instead of decoded values. A typical pod's entry is then about a fifth
// of the decoded form, which matters with thousands of entries on the heap.
func (m *memo) put(k memoKey, res *Result) {
	for _, p := range res.Trace.Policies {
		if p.Error != "" {
			return
		}
	}
	if res.Denied != "" {
		return
	}
	b, ops, err := marshalPatchValues(res.Patch, true)
	if err != nil {
		return // PatchJSON reports it to the caller
	}
	res.patchJSON = encodedPatchJSON(b)
	policies := slices.Clone(res.Trace.Policies)
	next := 0
	for i := range policies {
		n := len(policies[i].Ops)
		if n > 0 {
			policies[i].Ops = ops[next : next+n : next+n]
		}
		next += n
	}
	if next != len(ops) { // the patch is not the policies' ops in order: keep it whole
		return
	}
	m.cache.Add(k, &memoEntry{patch: ops, policies: policies, json: res.patchJSON})
}

// keyOf hashes the inputs of one evaluation; leaves is the projected pod.
func keyOf(req *Request, leaves []leaf) memoKey {
	w := newKeyWriter()
	w.str("pod")
	w.int(len(leaves))
	for _, l := range leaves {
		w.strs(l.path...)
		w.bytes(l.raw)
	}
	w.bytes(req.OldObject)
	a := req.Attributes
	w.strs(a.Kind.Group, a.Kind.Version, a.Kind.Kind, a.Resource.Group, a.Resource.Version, a.Resource.Resource,
		a.SubResource, a.Name, a.Namespace, a.Operation, a.UserInfo.Username, a.UserInfo.UID, strconv.FormatBool(a.DryRun))
	w.strs(a.UserInfo.Groups...)
	writeServiceAccountInputs(w, req)
	return w.sum()
}

// writeServiceAccountInputs writes what is known per ServiceAccount: the
// ServiceAccount (its resourceVersion changes with every update), the Namespace and
// the identities.
func writeServiceAccountInputs(w *keyWriter, req *Request) {
	if sa := req.ServiceAccount; sa != nil {
		w.b = append(w.b, sa.keyBytes()...)
	} else {
		w.str("no sa")
	}
	if ns := req.Namespace; ns != nil {
		w.strs("ns", ns.Name)
		w.stringMap(ns.Labels)
		w.stringMap(ns.Annotations)
	} else {
		w.str("no ns")
	}
	if cc := req.Identities.ContainerCredentials; cc != nil {
		w.strs("cc", cc.Namespace, cc.ServiceAccount)
	} else {
		w.str("no cc")
	}
	if cm := req.Identities.ConfigMap; cm != nil {
		w.strs("cm", cm.Key, strconv.FormatBool(cm.Wildcard), cm.RoleARN, cm.Audience,
			strconv.FormatBool(cm.UseRegionalSTS), strconv.FormatInt(cm.TokenExpiration, 10))
	} else {
		w.str("no cm")
	}
}

// serviceAccountKey is the ServiceAccount's part of a memo key, written once per
// ServiceAccount version (see ServiceAccount.keyBytes).
func serviceAccountKey(sa *ServiceAccount) []byte {
	var w keyWriter
	w.strs("sa", sa.Namespace, sa.Name, sa.UID, sa.ResourceVersion)
	w.stringMap(sa.Labels)
	w.stringMap(sa.Annotations)
	return w.b
}

// keyWriter writes length-prefixed fields, so that no two inputs hash alike by
// shifting bytes from one field to the next. Small fields are gathered in b and
// written to the hash together (each write of a small field through hash.Hash cost an
// allocation); large ones (the pod's projected JSON) go to the hash directly. With no
// hash, everything stays in b.
type keyWriter struct {
	h hash.Hash
	b []byte
}

// newKeyWriter returns a hashing keyWriter; sum gives it back for reuse (two are
// written per request, and the hash state and buffer were a kilobyte of garbage).
func newKeyWriter() *keyWriter { return keyWriters.Get().(*keyWriter) }

var keyWriters = sync.Pool{New: func() any { return &keyWriter{h: sha256.New(), b: make([]byte, 0, 512)} }}

// sum returns the hash of everything written, and gives a writer from newKeyWriter
// back: w must not be used afterwards.
func (w *keyWriter) sum() memoKey {
	w.flush()
	var k memoKey
	w.h.Sum(k[:0])
	w.h.Reset()
	if cap(w.b) <= 64<<10 {
		w.b = w.b[:0]
		keyWriters.Put(w)
	}
	return k
}

func (w *keyWriter) flush() {
	if w.h != nil && len(w.b) > 0 {
		w.h.Write(w.b)
		w.b = w.b[:0]
	}
}

func (w *keyWriter) int(n int) { w.b = binary.LittleEndian.AppendUint64(w.b, uint64(n)) }

func (w *keyWriter) bytes(b []byte) {
	w.int(len(b))
	if w.h != nil && len(b) > 256 {
		w.flush()
		w.h.Write(b)
		return
	}
	w.b = append(w.b, b...)
}

func (w *keyWriter) str(s string) {
	w.int(len(s))
	w.b = append(w.b, s...)
}

func (w *keyWriter) strs(ss ...string) {
	w.int(len(ss))
	for _, s := range ss {
		w.str(s)
	}
}

func (w *keyWriter) stringMap(m map[string]string) {
	keys := slices.Sorted(maps.Keys(m))
	w.int(len(keys))
	for _, k := range keys {
		w.str(k)
		w.str(m[k])
	}
}

func isMemoHit(err error) (*memoEntry, bool) {
	var hit errMemoHit
	if errors.As(err, &hit) {
		return hit.entry, true
	}
	return nil, false
}
