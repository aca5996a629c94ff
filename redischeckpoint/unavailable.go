package redischeckpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
)

// UnavailableError is a call Redis could not serve now: the server was
// unreachable, loading its data after a restart (LOADING), read-only after
// a failover demoted it (READONLY), out of memory under noeviction (OOM),
// without a reachable master (MASTERDOWN, CLUSTERDOWN, TRYAGAIN), or busy
// with a script (BUSY). A refused call stored nothing; a call whose reply
// was lost (a dropped connection, a timeout) ran whole or not at all, and
// its retry skips what it did (by the cursors). It matches
// [framework.ErrUnavailable], so the runner retries the event in place for
// as long as that lasts instead of parking its stream, and unwraps to the
// client's error.
type UnavailableError struct {
	Projection string
	Err        error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("redischeckpoint: projection %s: Redis unavailable (retried, the event is not at fault): %v", e.Projection, e.Err)
}

// Unwrap returns the client's error and [framework.ErrUnavailable].
func (e *UnavailableError) Unwrap() []error { return []error{e.Err, framework.ErrUnavailable} }

// unavailableReplies are the error replies of a server that cannot serve
// now, whatever the command.
var unavailableReplies = []string{"LOADING ", "READONLY ", "MASTERDOWN ", "CLUSTERDOWN ", "TRYAGAIN ", "BUSY ", "NOREPLICAS ", "OOM "}

// unavailableCode reports whether a write refused inside a script with
// this error code (the first word of Redis's reply) was refused by the
// server's state rather than for the event: read-only (a replica), out of
// memory under noeviction, or no master.
func unavailableCode(code string) bool {
	switch code {
	case "READONLY", "OOM", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS", "LOADING":
		return true
	}
	return false
}

// unavailable reports whether err says Redis could not serve the call now
// (rather than refusing it): a network failure, a timeout, or one of
// unavailableReplies. A cancelled context is not: the caller stopped.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range unavailableReplies {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, redis.ErrPoolTimeout)
}
