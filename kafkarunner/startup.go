package kafkarunner

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// startupBackoff bounds the waits between two attempts of a start-up step
// that found a server unreachable. Variables for tests.
var (
	startupBackoffMin = 500 * time.Millisecond
	startupBackoffMax = 15 * time.Second
)

// untilReachable runs step until it succeeds, fails for another reason
// than an unreachable server, or ctx ends. A replica started while Kafka
// or Redis is down waits for them (state "waiting", not ready, the error
// logged and in the status) instead of exiting: a Deployment rolled out
// during an outage, or a broker restarted, does not crash-loop.
func (r *Runner) untilReachable(ctx context.Context, what string, step func(context.Context) error) error {
	wait := startupBackoffMin
	for attempt := 1; ; attempt++ {
		err := step(ctx)
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			if err == nil && attempt > 1 {
				r.cfg.Logger.InfoContext(ctx, "reached "+what, "group", r.cfg.Group, "attempts", attempt)
			}
			return err
		}
		r.state.Store("waiting")
		r.setLastError(err)
		r.cfg.Logger.WarnContext(ctx, what+" unreachable; waiting", "group", r.cfg.Group, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil // stopped while waiting: a clean stop
		case <-time.After(wait):
		}
		wait = min(2*wait, startupBackoffMax)
	}
}

// unreachable tells a server that cannot be reached (refused or reset
// connections, dial and request timeouts, no broker answering) from a
// real error (a refused login, a missing topic, a bad certificate).
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &dnsErr):
		return dnsErr.IsTemporary || dnsErr.IsNotFound // a Service whose pods are not up yet
	case errors.As(err, &opErr):
		return opErr.Op == "dial" || opErr.Timeout()
	}
	return kgo.IsRetryableBrokerErr(err)
}
