package sources

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"

	"github.com/pod-identity-webhook/pod-identity-webhook/metrics"
)

// Timing of the identities-file reloads. The backoff is upstream's; the recheck and
// the settle delay are this project's.
const (
	// identitiesRecheck re-reads the file even without events: fsnotify can miss
	// changes (a replaced directory, a symlink into another directory).
	identitiesRecheck = 30 * time.Second
	// identitiesSettle lets a burst of events (truncate then write, kubelet's
	// several renames) settle before reading, so a half-written file is rarely seen.
	identitiesSettle    = 50 * time.Millisecond
	identitiesRetryBase = 10 * time.Millisecond
	identitiesRetryCap  = 5 * time.Minute
)

// kubeletDataLink is the symlink kubelet swaps to update a ConfigMap or Secret volume
// atomically; the files themselves are symlinks through it, so their own names may
// never appear in an event.
const kubeletDataLink = "..data"

// identitiesFile follows the container-credentials identities file
// (--watch-container-credentials-config).
type identitiesFile struct {
	path    string
	metrics *metrics.Metrics

	recheck, settle, retryBase, retryCap time.Duration

	// current is replaced as a whole. Never nil.
	current atomic.Pointer[Identities]

	mu       sync.Mutex // guards the fields below; reload runs on one goroutine but Ready reads them
	loaded   bool       // a good read (or a missing file) has happened
	seen     bool       // sum and missing describe the last read
	missing  bool
	sum      [sha256.Size]byte
	failures int    // consecutive bad reads, for the backoff
	lastErr  string // the last bad read's error, so a retry of the same failure is not logged again
}

func newIdentitiesFile(path string, m *metrics.Metrics) (*identitiesFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("identities file %q: %w", path, err)
	}
	f := &identitiesFile{path: abs, metrics: m,
		recheck: identitiesRecheck, settle: identitiesSettle, retryBase: identitiesRetryBase, retryCap: identitiesRetryCap}
	f.current.Store(&Identities{})
	return f, nil
}

func (f *identitiesFile) identities() Identities { return *f.current.Load() }

// ready says whether the file has been read once, and if not, why.
func (f *identitiesFile) ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.loaded:
		return nil
	case f.lastErr != "":
		return fmt.Errorf("identities file %s: %s", f.path, f.lastErr)
	}
	return fmt.Errorf("identities file %s: not read yet", f.path)
}

// start watches the file's directory, reads the file once, and keeps it up to date
// until ctx ends. Only the watch can fail: without it, changes would go unnoticed for
// up to the recheck period, which the caller should hear about.
func (f *identitiesFile) start(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("identities file %s: %w", f.path, err)
	}
	// The directory, not the file: editors and kubelet replace the file, which
	// would end a watch on the file itself.
	dir := filepath.Dir(f.path)
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return fmt.Errorf("identities file %s: watching %s: %w", f.path, dir, err)
	}
	retry := f.reload() // after the watch is set, so no change falls in between
	go f.loop(ctx, w, dir, retry)
	return nil
}

func (f *identitiesFile) loop(ctx context.Context, w *fsnotify.Watcher, dir string, retry time.Duration) {
	defer func() { _ = w.Close() }()
	recheck := time.NewTicker(f.recheck)
	defer recheck.Stop()
	// A nil channel stands for "not scheduled"; a replaced timer is simply dropped.
	var settleC, retryC <-chan time.Time
	schedule := func(d time.Duration) {
		retryC = nil
		if d > 0 {
			retryC = time.After(d)
		}
	}
	schedule(retry)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if f.relevant(ev.Name) && settleC == nil {
				settleC = time.After(f.settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			klog.ErrorS(err, "Watching the identities file's directory", "path", f.path)
		case <-settleC:
			settleC = nil
			schedule(f.reload())
		case <-retryC:
			schedule(f.reload())
		case <-recheck.C:
			// The directory may have been replaced, which drops the watch.
			if len(w.WatchList()) == 0 {
				if err := w.Add(dir); err != nil {
					klog.ErrorS(err, "Watching the identities file's directory again", "path", f.path)
				}
			}
			schedule(f.reload())
		}
	}
}

// relevant says whether an event in the directory may have changed the file.
func (f *identitiesFile) relevant(name string) bool {
	return filepath.Clean(name) == f.path || filepath.Base(name) == kubeletDataLink
}

// reload reads the file and applies it when its content changed. It returns when to
// try again after a bad read (0: no retry needed).
func (f *identitiesFile) reload() time.Duration {
	data, err := os.ReadFile(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// As upstream: no file lists nobody. Not an error, but worth a warning.
		if !f.seen || !f.missing {
			klog.InfoS("Warning: the identities file does not exist; no ServiceAccount gets container credentials", "path", f.path)
			f.apply(Identities{}, true, [sha256.Size]byte{})
		}
		return 0
	case err != nil:
		f.seen = false // whatever is read next is new
		return f.reject(fmt.Errorf("reading: %w", err), false)
	}
	sum := sha256.Sum256(data)
	if f.seen && !f.missing && sum == f.sum {
		if f.failures > 0 { // unchanged and still bad: keep backing off
			return f.backoff()
		}
		return 0
	}
	f.seen, f.missing, f.sum = true, false, sum
	ids, err := ParseIdentities(data)
	if err != nil {
		return f.reject(err, true)
	}
	f.apply(ids, false, sum)
	klog.InfoS("Loaded the identities file", "path", f.path, "identities", len(ids))
	return 0
}

func (f *identitiesFile) apply(ids Identities, missing bool, sum [sha256.Size]byte) {
	f.current.Store(&ids)
	f.loaded, f.seen, f.missing, f.sum = true, true, missing, sum
	f.failures, f.lastErr = 0, ""
	f.metrics.SourceUpdates.WithLabelValues("identities", "applied").Inc()
}

// reject keeps the previous identities and schedules a retry: the file may be in
// the middle of being written, or be fixed without an event we notice. New content is
// always reported; a read error only when it differs from the last one, so retries
// do not flood the log.
func (f *identitiesFile) reject(err error, newContent bool) time.Duration {
	if msg := err.Error(); newContent || msg != f.lastErr {
		klog.ErrorS(err, "Rejected the identities file; the previous identities stay in force", "path", f.path)
		f.metrics.SourceUpdates.WithLabelValues("identities", "rejected").Inc()
		f.lastErr = msg
	}
	return f.backoff()
}

// backoff counts a failure and returns the next delay: retryBase doubled per
// consecutive failure, at most retryCap.
func (f *identitiesFile) backoff() time.Duration {
	d := f.retryBase
	for i := 0; i < f.failures && d < f.retryCap; i++ {
		d *= 2
	}
	f.failures++
	return min(d, f.retryCap)
}
