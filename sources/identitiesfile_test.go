package sources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

func identitiesJSON(pairs ...string) string {
	var b strings.Builder
	b.WriteString(`{"identities":[`)
	for i := 0; i < len(pairs); i += 2 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"namespace":"` + pairs[i] + `","serviceAccount":"` + pairs[i+1] + `"}`)
	}
	b.WriteString("]}")
	return b.String()
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeAtomic replaces the file by a rename, so no reader sees it half written.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	write(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// listed is which of the probed ServiceAccounts the identities file lists.
func listed(c *Cluster) []string {
	var out []string
	for _, k := range [][2]string{{"team", "a"}, {"team", "b"}, {"team", "c"}} {
		if c.Identities(k[0], k[1]).ContainerCredentials != nil {
			out = append(out, k[0]+"/"+k[1])
		}
	}
	return out
}

func waitListed(t *testing.T, c *Cluster, what string, want ...string) {
	t.Helper()
	eventually(t, what, func() bool { return cmp.Equal(want, listed(c)) })
}

func TestIdentitiesFileLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identities.json")
	write(t, path, identitiesJSON("team", "a"))
	m := metrics.New()
	c := startCluster(t, fake.NewSimpleClientset(), Options{IdentitiesFile: path, Metrics: m})
	// Read during Start.
	if err := c.file.ready(); err != nil {
		t.Fatalf("ready after Start: %v", err)
	}
	if got := listed(c); !cmp.Equal(got, []string{"team/a"}) {
		t.Fatalf("initial identities = %v, want [team/a]", got)
	}

	writeAtomic(t, path, identitiesJSON("team", "a", "team", "b"))
	waitListed(t, c, "an appended identity", "team/a", "team/b")

	writeAtomic(t, path, `{"identities":[{"namespace":"team"`)
	eventually(t, "the rejection", func() bool {
		return value(t, m.SourceUpdates.WithLabelValues("identities", "rejected")) == 1
	})
	if got := listed(c); !cmp.Equal(got, []string{"team/a", "team/b"}) {
		t.Errorf("identities after a bad file = %v, want the previous [team/a team/b]", got)
	}

	writeAtomic(t, path, identitiesJSON("team", "c"))
	waitListed(t, c, "the fixed file", "team/c")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitListed(t, c, "the removal")

	writeAtomic(t, path, identitiesJSON("team", "b"))
	waitListed(t, c, "the file created again", "team/b")

	writeAtomic(t, path, "")
	waitListed(t, c, "an empty file")

	if v := value(t, m.SourceUpdates.WithLabelValues("identities", "applied")); v != 6 {
		t.Errorf("applied = %v, want 6 (initial, append, fix, removal, creation, empty)", v)
	}
}

func TestIdentitiesFileMissingAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identities.json")
	c := startCluster(t, fake.NewSimpleClientset(), Options{IdentitiesFile: path})
	if err := c.file.ready(); err != nil {
		t.Fatalf("a missing file should count as read: %v", err)
	}
	if got := listed(c); got != nil {
		t.Fatalf("identities = %v, want none", got)
	}
	write(t, path, identitiesJSON("team", "a"))
	waitListed(t, c, "the created file", "team/a")
}

// A file that cannot be parsed at start keeps the source not ready until it is fixed.
func TestIdentitiesFileMalformedAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identities.json")
	write(t, path, `{"identities":[{"namespace":"team"}]}`)
	c := startCluster(t, fake.NewSimpleClientset(), Options{IdentitiesFile: path})
	err := c.file.ready()
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `needs both "namespace" and "serviceAccount"`) {
		t.Fatalf("ready = %v, want an error naming the file and the problem", err)
	}
	write(t, path, identitiesJSON("team", "a"))
	eventually(t, "ready", func() bool { return c.file.ready() == nil })
	if got := listed(c); !cmp.Equal(got, []string{"team/a"}) {
		t.Errorf("identities = %v, want [team/a]", got)
	}
}

// kubelet updates a ConfigMap volume by swapping the ..data symlink; the file's own
// name never shows up in an event.
func TestIdentitiesFileKubeletSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mustSymlink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	version := func(name, content string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "identities.json"), content)
	}
	version("..2026_11_23_10_00_00.1", identitiesJSON("team", "a"))
	mustSymlink("..2026_11_23_10_00_00.1", filepath.Join(dir, "..data"))
	mustSymlink(filepath.Join("..data", "identities.json"), filepath.Join(dir, "identities.json"))

	c := startCluster(t, fake.NewSimpleClientset(), Options{IdentitiesFile: filepath.Join(dir, "identities.json")})
	if got := listed(c); !cmp.Equal(got, []string{"team/a"}) {
		t.Fatalf("initial identities = %v, want [team/a]", got)
	}

	// What kubelet's AtomicWriter does: new directory, new link, atomic rename over
	// ..data, old directory removed.
	version("..2026_11_23_10_05_00.2", identitiesJSON("team", "b", "team", "c"))
	mustSymlink("..2026_11_23_10_05_00.2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_11_23_10_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitListed(t, c, "the swapped version", "team/b", "team/c")
}

// The periodic re-read catches changes no event reports: here the file is a symlink
// into a directory that is not watched.
func TestIdentitiesFileRecheck(t *testing.T) {
	watched, elsewhere := t.TempDir(), t.TempDir()
	real := filepath.Join(elsewhere, "real.json")
	write(t, real, identitiesJSON("team", "a"))
	path := filepath.Join(watched, "identities.json")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(fake.NewSimpleClientset(), Options{IdentitiesFile: path})
	if err != nil {
		t.Fatal(err)
	}
	c.file.recheck = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitListed(t, c, "the initial read", "team/a")
	write(t, real, identitiesJSON("team", "b"))
	waitListed(t, c, "the re-read", "team/b")
}

func TestIdentitiesFileUnwatchableDirectory(t *testing.T) {
	c, err := NewCluster(fake.NewSimpleClientset(), Options{IdentitiesFile: filepath.Join(t.TempDir(), "missing-dir", "identities.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "missing-dir") {
		t.Errorf("Start = %v, want an error about the directory", err)
	}
}

// reload's retries back off from 10 ms, doubling up to the cap, while the file stays
// bad; a bad file is reported once per content, a good one resets the backoff.
func TestIdentitiesFileBackoff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identities.json")
	m := metrics.New()
	f, err := newIdentitiesFile(path, m)
	if err != nil {
		t.Fatal(err)
	}
	f.retryCap = 50 * time.Millisecond
	ms := time.Millisecond
	rejected := func() float64 { return value(t, m.SourceUpdates.WithLabelValues("identities", "rejected")) }

	write(t, path, "{")
	var got []time.Duration
	for range 5 {
		got = append(got, f.reload())
	}
	if want := []time.Duration{10 * ms, 20 * ms, 40 * ms, 50 * ms, 50 * ms}; !cmp.Equal(want, got) {
		t.Errorf("retry delays = %v, want %v", got, want)
	}
	if v := rejected(); v != 1 {
		t.Errorf("rejected = %v, want 1 (the same content is reported once)", v)
	}
	write(t, path, "[")
	if d := f.reload(); d != 50*ms {
		t.Errorf("delay after other bad content = %v, want the cap", d)
	}
	if v := rejected(); v != 2 {
		t.Errorf("rejected = %v, want 2", v)
	}
	write(t, path, identitiesJSON("team", "a"))
	if d := f.reload(); d != 0 {
		t.Errorf("delay after a good file = %v, want 0", d)
	}
	if d := f.reload(); d != 0 {
		t.Errorf("delay after an unchanged good file = %v, want 0", d)
	}
	write(t, path, "{")
	if d := f.reload(); d != 10*ms {
		t.Errorf("delay after a new failure = %v, want the base again", d)
	}
	if got := f.identities(); !cmp.Equal(got, Identities{{"team", "a"}: true}) {
		t.Errorf("identities = %v, want the last good team/a", got)
	}

	// A read error (here: the path is a directory) is retried too, and the same good
	// content read after it is applied again rather than taken for the bad one.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if d := f.reload(); d == 0 {
		t.Error("no retry after a read error")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write(t, path, identitiesJSON("team", "a"))
	if d := f.reload(); d != 0 {
		t.Errorf("delay after the good file is back = %v, want 0", d)
	}
	if f.failures != 0 {
		t.Errorf("failures = %d after a good read, want 0", f.failures)
	}
}

func TestIdentitiesFileRelevantEvents(t *testing.T) {
	f := &identitiesFile{path: "/etc/eks/identities.json"}
	for name, want := range map[string]bool{
		"/etc/eks/identities.json":     true,
		"/etc/eks/./identities.json":   true,
		"/etc/eks/..data":              true,
		"/etc/eks/..data_tmp":          false,
		"/etc/eks/..2026_11_23":        false,
		"/etc/eks/identities.json.swp": false,
		"/etc/eks/other.json":          false,
	} {
		if got := f.relevant(name); got != want {
			t.Errorf("relevant(%q) = %v, want %v", name, got, want)
		}
	}
}
