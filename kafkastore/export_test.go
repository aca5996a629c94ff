package kafkastore

import "time"

// Crash stops the runner the way a crash would: workers stop at once,
// nothing more is flushed or committed.
func (r *Runner) Crash() {
	r.crashed.Store(true)
	r.cancelMu.Lock()
	defer r.cancelMu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
}

// SetDeadLetterPause shortens how long workers skip an unreachable
// dead-letter topic; the returned function restores it.
func SetDeadLetterPause(d time.Duration) (restore func()) {
	old := deadLetterPause
	deadLetterPause = d
	return func() { deadLetterPause = old }
}

// SetHeldReadIdle shortens how long a read of held records waits for the
// next record; the returned function restores it.
func SetHeldReadIdle(d time.Duration) (restore func()) {
	old := heldReadIdle
	heldReadIdle = d
	return func() { heldReadIdle = old }
}

// SetCatalogGrace shortens how long the runner waits before it looks a new
// stream up in the catalog; the returned function restores it.
func SetCatalogGrace(d time.Duration) (restore func()) {
	old := catalogGrace
	catalogGrace = d
	return func() { catalogGrace = old }
}
