package kafkastore

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
