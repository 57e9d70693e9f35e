package policyset

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// entry is what one slot of the configuration held when it was read: the default
// bundle, a --bundle directory or a bundle ConfigMap, and the bundle loaded from it or
// why it did not load. Entries are immutable once made, so the active generation can
// keep its own and a later rebuild can fall back to them.
type entry struct {
	// slot identifies where the bundle lives, across reads: "default",
	// "dir:<index>:<path>", "configmap:<name>".
	slot string
	// source is the bundle's Source, as errors name it: DefaultBundleSource, the
	// directory as given, "configmap <namespace>/<name>".
	source string
	bundle *engine.Bundle // nil when err is set
	err    error          // why the bundle did not load
	// sum changes whenever anything that matters to a generation changes: the bundle's
	// content and, for a ConfigMap, its order. Equal sums mean "unchanged".
	sum string

	// explicit is set for the default bundle and the directories, at explicitIndex in
	// the configured order. ConfigMap bundles run after them, by order then name.
	explicit      bool
	explicitIndex int
	order         int64
	name          string            // ConfigMap name
	configMap     *corev1.ConfigMap // the object Events are recorded on; nil when explicit
}

func defaultEntry(b *engine.Bundle, err error) *entry {
	return newEntry(&entry{slot: "default", source: DefaultBundleSource, explicit: true}, b, err)
}

func dirEntry(i int, dir string, b *engine.Bundle, err error) *entry {
	return newEntry(&entry{slot: "dir:" + strconv.Itoa(i) + ":" + dir, source: dir, explicit: true, explicitIndex: i}, b, err)
}

// newEntry completes e with the load result and its sum.
func newEntry(e *entry, b *engine.Bundle, err error) *entry {
	e.bundle, e.err = b, err
	h := sha256.New()
	h.Write([]byte(e.source + "\x00" + strconv.FormatInt(e.order, 10) + "\x00"))
	if err != nil {
		h.Write([]byte("error\x00" + err.Error()))
	} else {
		// The parsed bundle rather than the raw files: files the loader ignores (a
		// README next to a directory bundle) do not make a change.
		manifest, _ := json.Marshal(b.Manifest) // plain data, sorted map keys
		h.Write(manifest)
		for _, list := range [][]engine.Module{b.Modules, b.Tests} {
			h.Write([]byte{0})
			for _, m := range list {
				h.Write([]byte(m.File + "\x00" + m.Source + "\x00"))
			}
		}
	}
	e.sum = hex.EncodeToString(h.Sum(nil))
	return e
}

// sortEntries puts entries in run order: the default bundle and the directories as
// configured, then the ConfigMap bundles by order annotation, then by name.
func sortEntries(es []*entry) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		switch {
		case a.explicit && b.explicit:
			return a.explicitIndex < b.explicitIndex
		case a.explicit != b.explicit:
			return a.explicit
		case a.order != b.order:
			return a.order < b.order
		default:
			return a.name < b.name
		}
	})
}

// setKey identifies a set of entries: the same slots in the same order with the same
// content give the same key, so a rebuild that would produce what is active is skipped.
func setKey(es []*entry) string {
	h := sha256.New()
	for _, e := range es {
		h.Write([]byte(e.slot + "\x00" + e.sum + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func bundlesOf(es []*entry) []*engine.Bundle {
	out := make([]*engine.Bundle, len(es))
	for i, e := range es {
		out[i] = e.bundle
	}
	return out
}
