package policyset

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestDebouncerCoalescesABurst(t *testing.T) {
	d := newDebouncer(50*time.Millisecond, time.Second)
	var fired atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx, func() { fired.Add(1) })
	for i := 0; i < 20; i++ {
		d.poke()
	}
	waitFor(t, "the rebuild", func() bool { return fired.Load() > 0 })
	time.Sleep(200 * time.Millisecond)
	if got := fired.Load(); got != 1 {
		t.Fatalf("fired %d times, want 1", got)
	}
}

// A steady trickle of changes, each within the quiet period, still fires by max.
func TestDebouncerFiresByMax(t *testing.T) {
	d := newDebouncer(100*time.Millisecond, 300*time.Millisecond)
	var fired atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx, func() { fired.Add(1) })
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) && fired.Load() == 0 {
		d.poke()
		time.Sleep(20 * time.Millisecond)
	}
	if fired.Load() == 0 {
		t.Fatal("a trickle of changes postponed the rebuild for 2s (max is 300ms)")
	}
}
