package policyset

import (
	"context"
	"time"
)

// debouncer turns bursts of change notifications into single calls. It fires once the
// notifications have been quiet for `quiet`, and at the latest `max` after the first
// of a burst, so a steady trickle of writes cannot postpone a rebuild for ever.
// Notifications that arrive while fire runs start the next burst: nothing is lost.
type debouncer struct {
	quiet, max time.Duration
	pokes      chan struct{}
}

func newDebouncer(quiet, max time.Duration) *debouncer {
	return &debouncer{quiet: quiet, max: max, pokes: make(chan struct{}, 1)}
}

// poke notes a change; it never blocks, so informer and fsnotify handlers stay fast.
func (d *debouncer) poke() {
	select {
	case d.pokes <- struct{}{}:
	default: // a notification is already pending; that one covers this change
	}
}

// run calls fire, on this goroutine, after each burst until ctx ends.
func (d *debouncer) run(ctx context.Context, fire func()) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		pending bool
		first   time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.pokes:
			now := time.Now()
			if !pending {
				pending, first = true, now
			}
			wait := d.quiet
			if left := first.Add(d.max).Sub(now); left < wait {
				wait = left
			}
			timer.Reset(wait) // Go ≥ 1.23: no stale tick survives a Reset
		case <-timer.C:
			pending = false
			fire()
		}
	}
}
