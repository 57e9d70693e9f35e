package bench

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/pod-identity-webhook/pod-identity-webhook/internal/benchdata"
	"github.com/pod-identity-webhook/pod-identity-webhook/test/bench/reviews"
)

// TestConcurrentAdmissions serves pods of every size from several goroutines at once
// through one handler: request bodies come from a shared pool and the pods refer to
// them, and the memo, the ServiceAccount caches and the name-set cache are shared, so
// a request that kept or changed another's bytes would show here as a wrong patch or
// UID (run with -race to also catch the access itself). Each response must carry its
// request's UID and the patch a lone request for that pod gets.
func TestConcurrentAdmissions(t *testing.T) {
	prog, err := CompileDefault(context.Background(), BenchConfig())
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(prog, ServiceAccount(true))
	want := map[benchdata.Size][]byte{}
	for _, size := range benchdata.Sizes {
		c := newCall()
		c.serve(h, NewTemplate(size).Body)
		resp, err := c.response()
		if err != nil || len(resp.Patch) == 0 {
			t.Fatalf("%s: lone request: %v, %d patch bytes", size, err, len(resp.Patch))
		}
		want[size] = resp.Patch
	}
	const goroutines, requests = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := benchdata.Sizes[g%len(benchdata.Sizes)]
			tmpl, c := NewTemplate(size), newCall()
			for i := range requests {
				n := uint64(g)<<32 | uint64(i)
				tmpl.SetUID(n)
				if i%3 != 0 { // a new template, or the same pod again (a memo hit)
					tmpl.SetTemplate(n)
				}
				c.serve(h, tmpl.Body)
				resp, err := c.response()
				switch {
				case err != nil:
					errs <- fmt.Errorf("goroutine %d request %d: %v", g, i, err)
					return
				case !bytes.HasSuffix([]byte(resp.UID), []byte(reviews.UIDSuffix(n))):
					errs <- fmt.Errorf("goroutine %d request %d: UID %q, want suffix %s", g, i, resp.UID, reviews.UIDSuffix(n))
					return
				case !bytes.Equal(resp.Patch, want[size]):
					errs <- fmt.Errorf("goroutine %d request %d (%s): patch\n%s\nwant\n%s", g, i, size, resp.Patch, want[size])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
