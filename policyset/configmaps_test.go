package policyset

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestConfigMapEntry(t *testing.T) {
	good := labelBundle("site", "k", "v")
	tests := []struct {
		name        string
		annotations map[string]string
		binary      map[string][]byte
		data        map[string]string
		order       int64
		err         string
	}{
		{name: "no annotation", data: good, order: 0},
		{name: "negative order", annotations: map[string]string{OrderAnnotation: "-3"}, data: good, order: -3},
		{name: "spaces", annotations: map[string]string{OrderAnnotation: " 7\n"}, data: good, order: 7},
		{name: "not an integer", annotations: map[string]string{OrderAnnotation: "1.5"}, data: good,
			err: `configmap policy/site: metadata.annotations[pod-identity-webhook.io/bundle-order]: must be an integer, got "1.5"`},
		{name: "binaryData, first key named", binary: map[string][]byte{"z.rego": nil, "b.rego": nil}, data: good,
			err: "configmap policy/site: b.rego: binaryData is not allowed: a bundle ConfigMap holds manifest.yaml and *.rego as data keys"},
		{name: "no manifest", data: map[string]string{"site.rego": good["site.rego"]},
			err: "configmap policy/site: manifest.yaml: missing: every bundle needs a manifest"},
		{name: "empty", data: nil, err: "configmap policy/site: manifest.yaml: missing: every bundle needs a manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cm := bundleConfigMap("site", tt.data, tt.annotations)
			cm.BinaryData = tt.binary
			e := configMapEntry(cm, false)
			if e.slot != "configmap:site" || e.source != "configmap policy/site" || e.configMap != cm || e.explicit {
				t.Fatalf("entry = %+v", e)
			}
			if tt.err != "" {
				if e.err == nil || e.err.Error() != tt.err || e.bundle != nil {
					t.Fatalf("err = %v, want %s", e.err, tt.err)
				}
				return
			}
			if e.err != nil || e.bundle.Name() != "site" || e.order != tt.order {
				t.Fatalf("err %v, order %d (want %d)", e.err, e.order, tt.order)
			}
		})
	}
}

// The sum covers what matters (content, order) and nothing else.
func TestEntrySum(t *testing.T) {
	base := entryOf(bundleConfigMap("site", labelBundle("site", "k", "v"), nil))
	same := entryOf(bundleConfigMap("site", labelBundle("site", "k", "v"), map[string]string{"unrelated": "x", OrderAnnotation: "0"}))
	if base.sum != same.sum {
		t.Fatal("an unrelated annotation changed the sum")
	}
	for name, other := range map[string]*entry{
		"content": entryOf(bundleConfigMap("site", labelBundle("site", "k", "w"), nil)),
		"order":   entryOf(bundleConfigMap("site", labelBundle("site", "k", "v"), map[string]string{OrderAnnotation: "1"})),
		"test":    entryOf(bundleConfigMap("site", with(labelBundle("site", "k", "v"), "more_test.rego", "package more_test\n"), nil)),
	} {
		if other.sum == base.sum {
			t.Errorf("a change of %s kept the sum", name)
		}
	}
}

func TestSortEntries(t *testing.T) {
	cm := func(name string, order int64) *entry {
		return &entry{slot: "configmap:" + name, name: name, order: order}
	}
	dir := func(i int) *entry { return &entry{slot: "dir", explicit: true, explicitIndex: i} }
	es := []*entry{cm("b", 0), dir(2), cm("a", 5), cm("c", -1), dir(0), cm("a0", 0), dir(1)}
	sortEntries(es)
	var got []string
	for _, e := range es {
		if e.explicit {
			got = append(got, "dir"+string(rune('0'+e.explicitIndex)))
		} else {
			got = append(got, e.name)
		}
	}
	if want := []string{"dir0", "dir1", "dir2", "c", "a0", "b", "a"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
}

// entryOf is a ConfigMap bundle entry as the manager loads it by default.
func entryOf(cm *corev1.ConfigMap) *entry { return configMapEntry(cm, false) }

// A bundle ConfigMap may not grant itself more than the guardrails allow unless the
// webhook says so: its author would otherwise be able to change any pod at all.
func TestConfigMapGrants(t *testing.T) {
	data := labelBundle("site", "k", "v")
	data["manifest.yaml"] = strings.Replace(data["manifest.yaml"], "policies:", "grants:\n  paths: [/spec/containers/*/image]\npolicies:", 1)
	if !strings.Contains(data["manifest.yaml"], "grants:") {
		t.Fatalf("test manifest has no grants: %s", data["manifest.yaml"])
	}
	refused := configMapEntry(bundleConfigMap("site", data, nil), false)
	if refused.err == nil || !strings.Contains(refused.err.Error(), "manifest.yaml: grants: grants are not allowed in bundle ConfigMaps unless the webhook runs with --allow-configmap-bundle-grants") {
		t.Fatalf("err = %v", refused.err)
	}
	allowed := configMapEntry(bundleConfigMap("site", data, nil), true)
	if allowed.err != nil || len(allowed.bundle.Manifest.Grants.Paths) != 1 {
		t.Fatalf("with grants allowed: err = %v", allowed.err)
	}
}
