package policyset

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/engine"
)

// Current is read by every admission while generations are swapped: readers always
// get a whole, working program (run with -race).
func TestCurrentUnderConcurrentReloads(t *testing.T) {
	dir := t.TempDir()
	writeBundleDir(t, dir, labelBundle("base", "base", "yes"))
	h := newHarness(t, Options{Dirs: []string{dir}})
	h.mustStart()
	h.waitGeneration(1)

	valid := map[string]bool{patch(addLabel("base", "yes")): true}
	for i := 0; i < 8; i++ {
		valid[patch(addLabel("base", "yes"), addLabel("site", fmt.Sprint(i)))] = true
	}
	ctx, stop := context.WithCancel(context.Background())
	var (
		wg     sync.WaitGroup
		reads  atomic.Int64
		failed atomic.Value
	)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				prog := h.m.Current()
				res, err := prog.Evaluate(context.Background(), engine.Request{Object: []byte(testPod), Attributes: engine.PodCreate("ns", "p")}, engine.EvalOptions{})
				if err != nil {
					failed.Store(err.Error())
					return
				}
				if got := patchString(res.Patch); !valid[got] {
					failed.Store("unexpected patch " + got)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < 8; i++ {
		cm := bundleConfigMap("site", labelBundle("site", "site", fmt.Sprint(i)), nil)
		if i == 0 {
			h.create(cm)
		} else {
			h.update(cm)
		}
		h.waitGeneration(uint64(i + 2))
	}
	stop()
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	if reads.Load() == 0 {
		t.Fatal("no reads")
	}
	if got, want := patchOf(t, h.m.Current()), patch(addLabel("base", "yes"), addLabel("site", "7")); got != want {
		t.Fatalf("patch = %s, want %s", got, want)
	}
}
