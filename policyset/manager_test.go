package policyset

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// A ConfigMap bundle added at run time becomes a new generation that runs after the
// default bundle, and its rule applies.
func TestConfigMapBundleAdded(t *testing.T) {
	h := newHarness(t, Options{DefaultBundle: true})
	h.mustStart()
	h.waitGeneration(1)
	if err := h.m.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	// A pod without a ServiceAccount: the default bundle changes nothing.
	if got, want := patchOf(t, h.m.Current()), patch(); got != want {
		t.Fatalf("patch before = %s, want %s", got, want)
	}

	h.create(bundleConfigMap("site", labelBundle("site", "team", "a"), nil))
	h.waitGeneration(2)
	if got, want := patchOf(t, h.m.Current()), patch(addLabel("team", "a")); got != want {
		t.Fatalf("patch = %s, want %s", got, want)
	}
	if got, want := bundleNames(h.m.Current()), []string{"default", "site"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("bundles = %v, want %v", got, want)
	}
	want := []recordedEvent{{"policy/site", corev1.EventTypeNormal, ReasonActivated, "bundle site is active in policy generation 2"}}
	if got := h.waitEvents(1); !reflect.DeepEqual(got, want) {
		t.Fatalf("events = %+v, want %+v", got, want)
	}
	if got := h.generationMetric(); got != 2 {
		t.Fatalf("generation metric = %g, want 2", got)
	}
	wantActive := []string{"default " + DefaultBundleSource + "=1", "site configmap policy/site=1"}
	if got := h.activeMetric(); !reflect.DeepEqual(got, wantActive) {
		t.Fatalf("active metric = %v, want %v", got, wantActive)
	}
}

// A broken bundle ConfigMap leaves the active generation as it is, says why with a
// Warning Event on that ConfigMap and a metric; fixing it activates it, deleting it
// removes its rule.
func TestBrokenConfigMapBundle(t *testing.T) {
	good := labelBundle("site", "team", "a")
	fixed := labelBundle("site", "team", "b")
	tests := []struct {
		name        string
		data        map[string]string
		binary      map[string][]byte
		annotations map[string]string
		message     string
		// prefix: the message ends in a text that is not ours (CEL's, a temp path)
		prefix bool
	}{
		{
			name:    "bad Rego",
			data:    with(good, "site.rego", "package site\n\nmutations := [\n"),
			message: "configmap policy/site: site.rego:4: unexpected eof token (and 1 more errors)",
		},
		{
			name: "bad CEL",
			data: with(good, "manifest.yaml", strings.Replace(good["manifest.yaml"],
				"has(object.spec.containers)", "has(object.spec.containers) &&", 1)),
			message: "configmap policy/site: manifest.yaml: policies[0].match[0].expression: policy label: condition has-containers: invalid CEL: ERROR: <input>:1:31: Syntax error: ",
			prefix:  true,
		},
		{
			name: "forbidden built-in",
			data: with(good, "site.rego", `package site

mutations := [{"op": "set-label", "key": "team", "value": sprintf("%d", [time.now_ns()])}]
`),
			message: "configmap policy/site: site.rego:3: built-in time.now_ns is not allowed in policies: it reads the clock, which makes results non-deterministic (policy label)",
		},
		{
			name: "failing test",
			data: with(good, "site_test.rego", `package site_test

import data.site

test_wrong_value if {
	site.mutations[0].value == "z"
}
`),
			message: "bundle tests failed in configmap policy/site: 1 passed, 1 failed, 0 skipped: site_test.test_wrong_value (site/site_test.rego:5): failed",
		},
		{
			name:    "binaryData",
			data:    good,
			binary:  map[string][]byte{"blob.rego": []byte("package x")},
			message: "configmap policy/site: blob.rego: binaryData is not allowed: a bundle ConfigMap holds manifest.yaml and *.rego as data keys",
		},
		{
			name:    "no manifest",
			data:    map[string]string{"site.rego": good["site.rego"]},
			message: "configmap policy/site: manifest.yaml: missing: every bundle needs a manifest",
		},
		{
			name:    "misspelt key",
			data:    with(good, "manifest.yml", "x"),
			message: "configmap policy/site: manifest.yml: unexpected key: a bundle ConfigMap holds only manifest.yaml and *.rego keys",
		},
		{
			name:        "bad order",
			data:        fixed,
			annotations: map[string]string{OrderAnnotation: "first"},
			message:     `configmap policy/site: metadata.annotations[pod-identity-webhook.io/bundle-order]: must be an integer, got "first"`,
		},
		{
			name:    "name of another bundle",
			data:    labelBundle("base", "base", "yes"),
			message: `configmap policy/site: manifest.yaml: name: bundle name "base" is already used by `,
			prefix:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeBundleDir(t, dir, labelBundle("base", "base", "yes"))
			h := newHarness(t, Options{Dirs: []string{dir}})
			h.mustStart()
			h.waitGeneration(1)

			h.create(bundleConfigMap("site", good, nil))
			h.waitGeneration(2)
			active := h.m.Current()
			if got, want := patchOf(t, active), patch(addLabel("base", "yes"), addLabel("team", "a")); got != want {
				t.Fatalf("patch = %s, want %s", got, want)
			}

			broken := bundleConfigMap("site", tt.data, tt.annotations)
			broken.BinaryData = tt.binary
			h.update(broken)
			ev := h.waitEvents(2)[1]
			if ev.Object != "policy/site" || ev.Type != corev1.EventTypeWarning || ev.Reason != ReasonRejected {
				t.Fatalf("event = %+v, want a Warning %s on policy/site", ev, ReasonRejected)
			}
			if tt.prefix && !strings.HasPrefix(ev.Message, tt.message) || !tt.prefix && ev.Message != tt.message {
				t.Fatalf("event message = %q, want %q", ev.Message, tt.message)
			}
			if got := h.m.Generation(); got != 2 {
				t.Fatalf("generation = %d, want 2 (the previous one)", got)
			}
			if h.m.Current() != active {
				t.Fatal("the active program changed")
			}
			if got := h.failures("configmap policy/site"); got != 1 {
				t.Fatalf("failures{configmap policy/site} = %g, want 1", got)
			}
			if got := h.generationMetric(); got != 2 {
				t.Fatalf("generation metric = %g, want 2", got)
			}

			h.update(bundleConfigMap("site", fixed, nil))
			h.waitGeneration(3)
			if got, want := patchOf(t, h.m.Current()), patch(addLabel("base", "yes"), addLabel("team", "b")); got != want {
				t.Fatalf("patch after the fix = %s, want %s", got, want)
			}
			want := recordedEvent{"policy/site", corev1.EventTypeNormal, ReasonActivated, "bundle site is active in policy generation 3"}
			if got := h.waitEvents(3)[2]; got != want {
				t.Fatalf("event = %+v, want %+v", got, want)
			}

			h.delete("site")
			h.waitGeneration(4)
			if got, want := patchOf(t, h.m.Current()), patch(addLabel("base", "yes")); got != want {
				t.Fatalf("patch after the deletion = %s, want %s", got, want)
			}
			if got, want := h.activeMetric(), []string{"base " + dir + "=1"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("active metric = %v, want %v", got, want)
			}
			if got := len(h.events.all()); got != 3 {
				t.Fatalf("%d events, want 3: %+v", got, h.events.all())
			}
		})
	}
}

// A directory bundle is watched with its subdirectories, including new ones; a broken
// edit is held back, a fix goes through, and so does a directory replaced as a whole.
func TestDirectoryBundleEdit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "site")
	writeBundleDir(t, dir, map[string]string{
		"manifest.yaml": `apiVersion: pod-identity-webhook.io/v1alpha1
kind: Bundle
name: site
policies:
  - name: label
    rule: data.site.mutations
`,
		"site.rego": `package site

import data.site.lib

default more := "none"

more := data.site_more.value

mutations := [
	{"op": "set-label", "key": "team", "value": lib.value},
	{"op": "set-label", "key": "extra", "value": more},
]
`,
		"lib/value.rego": "package site.lib\n\nvalue := \"a\"\n",
		"README.md":      "not part of the bundle",
	})
	h := newHarness(t, Options{Dirs: []string{dir}})
	h.mustStart()
	h.waitGeneration(1)
	wantPatch := func(team, extra string) {
		t.Helper()
		if got, want := patchOf(t, h.m.Current()), patch(addLabel("team", team), addLabel("extra", extra)); got != want {
			t.Fatalf("patch = %s, want %s", got, want)
		}
	}
	wantPatch("a", "none")

	writeBundleDir(t, dir, map[string]string{"lib/value.rego": "package site.lib\n\nvalue := \"b\"\n"})
	h.waitGeneration(2)
	wantPatch("b", "none")

	// A file the loader ignores is no change.
	writeBundleDir(t, dir, map[string]string{"README.md": "still not part of the bundle"})
	time.Sleep(10 * h.m.opts.Debounce)
	h.waitGeneration(2)

	// A directory created after the start is watched too.
	if err := os.MkdirAll(filepath.Join(dir, "extra", "more"), 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * h.m.opts.Debounce) // let the watcher add it before the file appears
	writeBundleDir(t, dir, map[string]string{"extra/more/value.rego": "package site_more\n\nvalue := \"c\"\n"})
	h.waitGeneration(3)
	wantPatch("b", "c")

	active := h.m.Current()
	writeBundleDir(t, dir, map[string]string{"lib/value.rego": "package site.lib\n\nvalue := \n"})
	waitFor(t, "the rejection", func() bool { return h.failures(dir) == 1 })
	if got := h.m.Generation(); got != 3 || h.m.Current() != active {
		t.Fatalf("generation = %d (program changed: %v), want 3 unchanged", got, h.m.Current() != active)
	}
	if got := h.events.all(); len(got) != 0 {
		t.Fatalf("events = %+v, want none (a directory is not a ConfigMap)", got)
	}

	writeBundleDir(t, dir, map[string]string{"lib/value.rego": "package site.lib\n\nvalue := \"d\"\n"})
	h.waitGeneration(4)
	wantPatch("d", "c")

	// Replaced as a whole: removed, then a new copy moved into place.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * h.m.opts.Debounce)
	staging := filepath.Join(t.TempDir(), "site")
	writeBundleDir(t, staging, labelBundle("site", "team", "e"))
	if err := os.Rename(staging, dir); err != nil {
		t.Fatal(err)
	}
	h.waitGeneration(5)
	if got, want := patchOf(t, h.m.Current()), patch(addLabel("team", "e")); got != want {
		t.Fatalf("patch = %s, want %s", got, want)
	}
}

// ConfigMap bundles run by their order annotation, then by name; changing the
// annotation reorders them in a new generation.
func TestConfigMapBundleOrder(t *testing.T) {
	order := func(v string) map[string]string { return map[string]string{OrderAnnotation: v} }
	h := newHarness(t, Options{},
		bundleConfigMap("b", labelBundle("b", "b", "1"), nil),
		bundleConfigMap("a", labelBundle("a", "a", "1"), order("10")),
		bundleConfigMap("c", labelBundle("c", "c", "1"), order("-1")),
		bundleConfigMap("d", labelBundle("d", "d", "1"), order(" 0 ")),
	)
	h.mustStart()
	h.waitGeneration(1)
	if got, want := bundleNames(h.m.Current()), []string{"c", "b", "d", "a"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("bundles = %v, want %v", got, want)
	}
	if got, want := patchOf(t, h.m.Current()), patch(addLabel("c", "1"), addLabel("b", "1"), addLabel("d", "1"), addLabel("a", "1")); got != want {
		t.Fatalf("patch = %s, want %s", got, want)
	}

	h.update(bundleConfigMap("a", labelBundle("a", "a", "1"), order("-5")))
	h.waitGeneration(2)
	if got, want := bundleNames(h.m.Current()), []string{"a", "c", "b", "d"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("bundles = %v, want %v", got, want)
	}
	ev := h.waitEvents(5)[4]
	if want := (recordedEvent{"policy/a", corev1.EventTypeNormal, ReasonActivated, "bundle a is active in policy generation 2"}); ev != want {
		t.Fatalf("event = %+v, want %+v", ev, want)
	}
}

// At startup a broken ConfigMap bundle is left out: the webhook becomes ready with
// the rest, and the ConfigMap gets a Warning.
func TestStartupWithBrokenConfigMapBundle(t *testing.T) {
	intruder := map[string]string{
		"manifest.yaml": "apiVersion: pod-identity-webhook.io/v1alpha1\nkind: Bundle\nname: bad\n",
		// Adds to the base bundle's set, which base's own test pins down: the failing
		// test is base's, yet the cause is this ConfigMap.
		"names.rego": "package base\n\nnames contains \"intruder\"\n",
	}
	tests := []struct {
		name    string
		bad     map[string]string
		message string // %s: the base directory
	}{
		{"bad Rego", with(labelBundle("bad", "bad", "1"), "bad.rego", "package bad\nmutations := {"),
			"configmap policy/bad: bad.rego:2: unexpected eof token (and 1 more errors)"},
		{"failing test", with(labelBundle("bad", "bad", "1"), "bad_test.rego", "package bad_test\n\ntest_fails if false\n"),
			"bundle tests failed in configmap policy/bad: 2 passed, 1 failed, 0 skipped: bad_test.test_fails (bad/bad_test.rego:3): failed"},
		{"breaks another bundle's test", intruder,
			"the bundles fail with this change: bundle tests failed in %s: 0 passed, 1 failed, 0 skipped: base_test.test_names (base/base_test.rego:5): failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeBundleDir(t, dir, namesBundle())
			h := newHarness(t, Options{Dirs: []string{dir}},
				bundleConfigMap("good", labelBundle("good", "good", "1"), nil),
				bundleConfigMap("bad", tt.bad, nil))
			h.mustStart()
			if err := h.m.Ready(); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			h.waitGeneration(1)
			if got, want := bundleNames(h.m.Current()), []string{"base", "good"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("bundles = %v, want %v", got, want)
			}
			if got, want := patchOf(t, h.m.Current()), patch(addLabel("names", "base"), addLabel("good", "1")); got != want {
				t.Fatalf("patch = %s, want %s", got, want)
			}
			want := []recordedEvent{
				{"policy/bad", corev1.EventTypeWarning, ReasonRejected, strings.ReplaceAll(tt.message, "%s", dir)},
				{"policy/good", corev1.EventTypeNormal, ReasonActivated, "bundle good is active in policy generation 1"},
			}
			if got := h.waitEvents(2); !reflect.DeepEqual(got, want) {
				t.Fatalf("events =\n%+v\nwant\n%+v", got, want)
			}
			if got := h.failures("configmap policy/bad"); got != 1 {
				t.Fatalf("failures{configmap policy/bad} = %g, want 1", got)
			}

			// Fixed, it joins.
			h.update(bundleConfigMap("bad", labelBundle("bad", "bad", "1"), nil))
			h.waitGeneration(2)
			if got, want := bundleNames(h.m.Current()), []string{"base", "bad", "good"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("bundles = %v, want %v", got, want)
			}
		})
	}
}

// namesBundle is a bundle "base" with an extension point, the set names, and a test
// that pins it down.
func namesBundle() map[string]string {
	return map[string]string{
		"manifest.yaml": `apiVersion: pod-identity-webhook.io/v1alpha1
kind: Bundle
name: base
policies:
  - name: names
    rule: data.base.mutations
`,
		"base.rego": `package base

names contains "base"

mutations := [{"op": "set-label", "key": "names", "value": concat(",", sort([n | some n in names]))}]
`,
		"base_test.rego": `package base_test

import data.base

test_names if {
	base.names == {"base"}
}
`,
	}
}

// The operator's explicit configuration must be right: Start fails on it, whatever
// the ConfigMaps hold.
func TestStartupWithBrokenDirectoryBundle(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string // nil: no directory at all
		message string            // %s: the directory
	}{
		{"bad Rego", with(labelBundle("base", "base", "1"), "base.rego", "package base\nmutations := ["),
			"%s: base.rego:2: unexpected eof token (and 1 more errors)"},
		{"failing test", with(labelBundle("base", "base", "1"), "base_test.rego", "package base_test\n\ntest_fails if false\n"),
			"bundle tests failed in %s: 1 passed, 1 failed, 0 skipped: base_test.test_fails (base/base_test.rego:3): failed"},
		{"forbidden built-in", with(labelBundle("base", "base", "1"), "rand.rego", "package base\n\nr := rand.intn(\"x\", 10)\n"),
			"%s: rand.rego:3: built-in rand.intn is not allowed in policies: it is random, which makes results non-deterministic (policy label)"},
		{"missing", nil, "%s: cannot read bundle directory: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "base")
			if tt.files != nil {
				writeBundleDir(t, dir, tt.files)
			}
			h := newHarness(t, Options{Dirs: []string{dir}}, bundleConfigMap("good", labelBundle("good", "good", "1"), nil))
			err := h.start()
			if want := strings.ReplaceAll(tt.message, "%s", dir); err == nil || err.Error() != want {
				t.Fatalf("Start: %v, want %s", err, want)
			}
			if h.m.Ready() == nil || h.m.Current() != nil || h.m.Generation() != 0 {
				t.Fatalf("after a failed Start: Ready %v, Current %v, Generation %d", h.m.Ready(), h.m.Current(), h.m.Generation())
			}
			select {
			case <-h.m.Done():
			case <-time.After(deadline):
				t.Fatal("the manager did not stop after a failed Start")
			}
		})
	}
}

// A change whose failure names no changed bundle (here another bundle's test breaks)
// is isolated by trying the changed ConfigMaps one at a time: the culprit is held
// back, an innocent ConfigMap that changed at the same time goes through.
func TestRunTimeFailureNotAttributable(t *testing.T) {
	dir := t.TempDir()
	writeBundleDir(t, dir, namesBundle())
	h := newHarness(t, Options{Dirs: []string{dir}})
	h.mustStart()
	h.waitGeneration(1)

	// Usually within one debounce period, so that one rebuild sees both.
	h.create(bundleConfigMap("intruder", map[string]string{
		"manifest.yaml": "apiVersion: pod-identity-webhook.io/v1alpha1\nkind: Bundle\nname: intruder\n",
		"names.rego":    "package base\n\nnames contains \"intruder\"\n",
	}, nil))
	h.create(bundleConfigMap("site", labelBundle("site", "site", "1"), nil))
	h.waitGeneration(2)
	if got, want := patchOf(t, h.m.Current()), patch(addLabel("names", "base"), addLabel("site", "1")); got != want {
		t.Fatalf("patch = %s, want %s", got, want)
	}
	want := []recordedEvent{
		{"policy/intruder", corev1.EventTypeWarning, ReasonRejected, "the bundles fail with this change: bundle tests failed in " + dir +
			": 0 passed, 1 failed, 0 skipped: base_test.test_names (base/base_test.rego:5): failed"},
		{"policy/site", corev1.EventTypeNormal, ReasonActivated, "bundle site is active in policy generation 2"},
	}
	// Also when the two creations land in two rebuilds: the intruder is seen first,
	// alone, and rejected; then site goes in.
	if got := h.waitEvents(2); !reflect.DeepEqual(got, want) {
		t.Fatalf("events =\n%+v\nwant\n%+v", got, want)
	}
	if got := h.failures("configmap policy/intruder"); got != 1 {
		t.Fatalf("failures{intruder} = %g, want 1", got)
	}
	if got := h.failures("configmap policy/site"); got != 0 {
		t.Fatalf("failures{site} = %g, want 0", got)
	}
}

// With ConfigMap bundles only, the manager starts unready and becomes ready with the
// first good bundle ConfigMap; ConfigMaps without the selector's label are not bundles.
func TestConfigMapBundlesOnly(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustStart()
	want := "no policy bundles to activate: waiting for a bundle ConfigMap that loads, compiles and passes its tests"
	if err := h.m.Ready(); err == nil || err.Error() != want {
		t.Fatalf("Ready = %v, want %s", err, want)
	}
	unlabelled := bundleConfigMap("other", labelBundle("other", "other", "1"), nil)
	unlabelled.Labels = nil
	h.create(unlabelled)
	h.create(bundleConfigMap("site", labelBundle("site", "site", "1"), nil))
	h.waitGeneration(1)
	if err := h.m.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if got, want := bundleNames(h.m.Current()), []string{"site"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("bundles = %v, want %v", got, want)
	}
	// The engine cannot compile nothing: deleting the last bundle keeps the generation.
	h.delete("site")
	time.Sleep(10 * h.m.opts.Debounce)
	if h.m.Generation() != 1 || h.m.Ready() != nil {
		t.Fatalf("generation %d, ready %v after deleting the last bundle", h.m.Generation(), h.m.Ready())
	}
}
