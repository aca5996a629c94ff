package kafkarunner

import (
	"errors"
	"testing"
	"time"
)

// A last error stays in reports while it is recent or a partition is still
// not running, and is cleared after that: status must not show a problem
// that is over as if it were current.
func TestLastErrorIsClearedOnceOverAndOld(t *testing.T) {
	r := &Runner{parts: map[int32]*partition{}}
	r.setLastError(errors.New("fetch events/3: broker down"))
	if r.LastError() == "" || r.lastErrorAt().IsZero() {
		t.Fatal("a fresh error is not reported")
	}
	old := lastErrorShown
	lastErrorShown = 0
	defer func() { lastErrorShown = old }()
	time.Sleep(time.Millisecond)
	if got := r.LastError(); got != "" || !r.lastErrorAt().IsZero() {
		t.Errorf("an old error with every partition running: %q", got)
	}
}
