package admission

import (
	"context"
	"sync"
)

// workers runs functions on a fixed set of long-lived goroutines. OPA's evaluator
// recurses deeply; a goroutine that net/http starts for each request has to grow its
// stack every time, which cost about 30% of an evaluation in the performance notes.
// Workers keep their grown stacks.
type workers struct {
	jobs chan func()
	stop chan struct{}
	once sync.Once
}

func newWorkers(n int) *workers {
	w := &workers{jobs: make(chan func()), stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		go func() {
			for {
				select {
				case job := <-w.jobs:
					job()
				case <-w.stop:
					return
				}
			}
		}()
	}
	return w
}

// run runs fn on a worker and waits for it. If ctx ends before a worker is free, fn
// does not run and ctx's error is returned.
func (w *workers) run(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case w.jobs <- func() { defer close(done); fn() }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

func (w *workers) close() { w.once.Do(func() { close(w.stop) }) }
