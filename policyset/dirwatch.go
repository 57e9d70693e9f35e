package policyset

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// dirWatcher reports changes below the --bundle directories. inotify watches are not
// recursive, so every subdirectory (where .rego files may live) gets its own watch,
// including the ones created later. The parent of each bundle directory is watched
// too, so that a directory replaced as a whole (rm -rf && cp -r, a symlink swapped)
// is noticed and watched again.
type dirWatcher struct {
	w       *fsnotify.Watcher
	changed func()
	roots   map[string]bool // the bundle directories, cleaned
	owned   map[string]bool // directories watched as part of a bundle; only touched on run's goroutine after start
}

func newDirWatcher(dirs []string, changed func()) (*dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	d := &dirWatcher{w: w, changed: changed, roots: map[string]bool{}, owned: map[string]bool{}}
	for _, dir := range dirs {
		dir = filepath.Clean(dir)
		d.roots[dir] = true
		// The parent may be unreadable or gone; the bundle's own watch still works.
		_ = w.Add(filepath.Dir(dir))
		d.addTree(dir)
	}
	return d, nil
}

// addTree watches root and its subdirectories. Hidden subdirectories are skipped as
// the loader skips them (.git, and the timestamped directories of a ConfigMap volume,
// whose swap shows as a change of the ..data link in root).
func (d *dirWatcher) addTree(root string) {
	// The trailing separator makes the walk follow root when it is a symlink.
	_ = filepath.WalkDir(root+string(os.PathSeparator), func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil // gone or unreadable meanwhile: the rebuild reports it
		}
		p = filepath.Clean(p)
		if p != root && strings.HasPrefix(e.Name(), ".") {
			return fs.SkipDir
		}
		if err := d.w.Add(p); err != nil {
			klog.ErrorS(err, "Cannot watch a bundle directory; its changes will be picked up with the next other change", "dir", p)
			return nil
		}
		d.owned[p] = true
		return nil
	})
}

// relevant reports whether an event concerns a bundle: something inside a watched
// bundle directory, or a bundle directory itself (seen from its parent).
func (d *dirWatcher) relevant(name string) bool {
	name = filepath.Clean(name)
	return d.roots[name] || d.owned[filepath.Dir(name)]
}

// run forwards relevant events until ctx ends, then closes the watcher.
func (d *dirWatcher) run(ctx context.Context) {
	defer d.w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod || !d.relevant(ev.Name) {
				continue // a bare chmod changes no content (and editors and indexers do it a lot)
			}
			if ev.Op.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() && !d.hidden(ev.Name) {
					d.addTree(filepath.Clean(ev.Name))
				}
			}
			if ev.Op.Has(fsnotify.Remove) || ev.Op.Has(fsnotify.Rename) {
				delete(d.owned, filepath.Clean(ev.Name)) // inotify drops the watch itself
			}
			d.changed()
		case err, ok := <-d.w.Errors:
			if !ok {
				return
			}
			// Typically an event queue overflow: changes may have been missed, so
			// rebuild anyway (an unchanged set costs nothing).
			klog.ErrorS(err, "Watching the bundle directories")
			d.changed()
		}
	}
}

// hidden reports a hidden directory below a bundle root (not the root itself).
func (d *dirWatcher) hidden(name string) bool {
	name = filepath.Clean(name)
	return !d.roots[name] && strings.HasPrefix(filepath.Base(name), ".")
}
