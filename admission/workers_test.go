package admission

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestWorkersRunEveryJobAndStop(t *testing.T) {
	w := newWorkers(2)
	defer w.close()
	var n atomic.Int32
	done := make(chan struct{})
	for i := 0; i < 50; i++ {
		go func() {
			if err := w.run(context.Background(), func() { n.Add(1) }); err != nil {
				t.Error(err)
			}
			done <- struct{}{}
		}()
	}
	for i := 0; i < 50; i++ {
		<-done
	}
	if n.Load() != 50 {
		t.Fatalf("%d jobs ran, want 50", n.Load())
	}
	// A job that cannot get a worker before its context ends does not run.
	block := make(chan struct{})
	go func() { _ = w.run(context.Background(), func() { <-block }) }()
	go func() { _ = w.run(context.Background(), func() { <-block }) }()
	time.Sleep(20 * time.Millisecond) // both workers busy
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	ran := false
	if err := w.run(ctx, func() { ran = true }); err == nil || ran {
		t.Fatalf("run with both workers busy: err=%v ran=%v", err, ran)
	}
	close(block)
}

// The pool gives the same decision as evaluating on the caller's goroutine.
func TestAdmitWithWorkers(t *testing.T) {
	plain := testAdmitter(t)
	pooled := testAdmitter(t)
	pooled.Workers = 2
	defer pooled.Close()
	for _, review := range reviewSeeds(t)[:6] {
		r, err := DecodeReview(review)
		if err != nil {
			t.Fatal(err)
		}
		a, err1 := plain.Admit(context.Background(), Attributes(r.Request), r.Request.Object.Raw)
		b, err2 := pooled.Admit(context.Background(), Attributes(r.Request), r.Request.Object.Raw)
		if err1 != nil || err2 != nil || string(a.Patch) != string(b.Patch) {
			t.Fatalf("plain %s (%v) vs pooled %s (%v)", a.Patch, err1, b.Patch, err2)
		}
	}
}
