package engine

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// What a policy may change without a grant. See docs/policies.md, "Guardrails".
var (
	defaultVolumeTypes     = []string{"projected", "configMap", "secret", "emptyDir"}
	defaultSecurityContext = []string{"fsGroup", "fsGroupChangePolicy"}
	// containerFields are the container fields policies may change, in both
	// spec.containers and spec.initContainers.
	containerFields = []string{"env", "envFrom", "volumeMounts"}
)

// guard decides whether a patch operation stays inside what a bundle may change.
type guard struct {
	grants          [][]string // granted path patterns, split
	volumeTypes     map[string]bool
	securityContext map[string]bool
}

func newGuard(g Grants) *guard {
	gd := &guard{volumeTypes: map[string]bool{}, securityContext: map[string]bool{}}
	for _, p := range g.Paths {
		gd.grants = append(gd.grants, strings.Split(strings.TrimPrefix(p, "/"), "/"))
	}
	for _, t := range append(append([]string{}, defaultVolumeTypes...), g.VolumeTypes...) {
		gd.volumeTypes[t] = true
	}
	for _, f := range append(append([]string{}, defaultSecurityContext...), g.SecurityContextFields...) {
		gd.securityContext[f] = true
	}
	return gd
}

const guardHint = "policies may change container env, envFrom and volumeMounts, projected/configMap/secret/emptyDir volumes, labels, annotations and spec.securityContext.fsGroup; a bundle manifest can grant more under grants"

// check returns nil when op is allowed on doc, else the reason.
func (g *guard) check(op Op, doc map[string]any) error {
	segs, err := splitPointer(op.Path)
	if err != nil {
		return err
	}
	return g.checkSegs(op, segs, doc)
}

// checkSegs is check with the path already split.
func (g *guard) checkSegs(op Op, segs []string, doc map[string]any) error {
	for _, pat := range g.grants {
		if matchPattern(pat, segs) {
			return nil
		}
	}
	deny := func(format string, args ...any) error {
		return fmt.Errorf("%s is not allowed: %s (%s)", op.Path, fmt.Sprintf(format, args...), guardHint)
	}
	switch {
	case len(segs) >= 2 && segs[0] == "metadata" && (segs[1] == "labels" || segs[1] == "annotations"):
		if len(segs) > 3 {
			return deny("labels and annotations are strings")
		}
		return nil
	case len(segs) >= 4 && segs[0] == "spec" && (segs[1] == "containers" || segs[1] == "initContainers"):
		if slices.Contains(containerFields, segs[3]) {
			return nil
		}
		return deny("container field %q", segs[3])
	case len(segs) >= 2 && segs[0] == "spec" && segs[1] == "volumes":
		return g.checkVolumes(op, segs, doc, deny)
	case len(segs) >= 2 && segs[0] == "spec" && segs[1] == "securityContext":
		return g.checkSecurityContext(op, segs, doc, deny)
	}
	return deny("outside the fields identity injection needs")
}

func (g *guard) checkVolumes(op Op, segs []string, doc map[string]any, deny func(string, ...any) error) error {
	switch {
	case len(segs) == 2: // the whole volumes list
		if op.Op == "remove" {
			return deny("removing every volume")
		}
		list, ok := op.Value.([]any)
		if !ok {
			return deny("spec.volumes must be an array")
		}
		if old, ok := lookup(doc, "spec", "volumes"); ok {
			if oldList, _ := old.([]any); len(oldList) > 0 && op.Op != "test" {
				return deny("replacing the whole volume list; add volumes one by one")
			}
		}
		for _, v := range list {
			if err := g.checkVolume(v, deny); err != nil {
				return err
			}
		}
		return nil
	case len(segs) == 3: // one volume
		if op.Op == "remove" || op.Op == "test" {
			return nil
		}
		if op.Op == "replace" {
			if old, ok := lookup(doc, segs...); ok {
				if err := g.checkVolume(old, deny); err != nil {
					return err
				}
			}
		}
		return g.checkVolume(op.Value, deny)
	default: // inside a volume: the volume must be of an allowed type, and so must the field
		old, ok := lookup(doc, segs[:3]...)
		if !ok {
			return nil // applying will fail with "does not exist"
		}
		if err := g.checkVolume(old, deny); err != nil {
			return err
		}
		if segs[3] != "name" && !g.volumeTypes[segs[3]] {
			return deny("volume source %q", segs[3])
		}
		return nil
	}
}

func (g *guard) checkVolume(v any, deny func(string, ...any) error) error {
	vol, ok := v.(map[string]any)
	if !ok {
		return deny("a volume must be an object")
	}
	for _, k := range slices.Sorted(maps.Keys(vol)) {
		if k != "name" && !g.volumeTypes[k] {
			return deny("volume type %q", k)
		}
	}
	return nil
}

func (g *guard) checkSecurityContext(op Op, segs []string, doc map[string]any, deny func(string, ...any) error) error {
	if len(segs) >= 3 {
		if !g.securityContext[segs[2]] {
			return deny("securityContext field %q", segs[2])
		}
		return nil
	}
	// The whole pod securityContext: it may neither introduce nor drop other fields.
	if op.Op == "remove" {
		return deny("removing the pod securityContext")
	}
	if old, ok := lookup(doc, "spec", "securityContext"); ok {
		if m, _ := old.(map[string]any); m != nil {
			if f := g.firstForbiddenField(m); f != "" {
				return deny("replacing a securityContext that sets %q", f)
			}
		}
	}
	m, ok := op.Value.(map[string]any)
	if !ok {
		return deny("securityContext must be an object")
	}
	if f := g.firstForbiddenField(m); f != "" {
		return deny("securityContext field %q", f)
	}
	return nil
}

func (g *guard) firstForbiddenField(m map[string]any) string {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !g.securityContext[k] {
			return k
		}
	}
	return ""
}

// matchPattern matches path segments against a pattern: "*" matches one segment, a
// final "**" matches any (possibly empty) rest.
func matchPattern(pat, segs []string) bool {
	for i, p := range pat {
		if p == "**" && i == len(pat)-1 {
			return true
		}
		if i >= len(segs) {
			return false
		}
		if p != "*" && p != segs[i] {
			return false
		}
	}
	return len(pat) == len(segs)
}
