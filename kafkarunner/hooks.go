package kafkarunner

import (
	"context"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Hook is a value implementing one or more of the Hook* interfaces below,
// given in Config.Hooks (as franz-go's kgo.Hook): the runner calls
// each hook that implements an interface when that happens. Hooks run
// synchronously on the partition's worker goroutine, after the fact: keep
// them fast, never block, and do not apply events from them.
type Hook any

// HookEventApplied is called for every event applied (before its cursor is
// stored: a crash may repeat the call for an event applied again).
type HookEventApplied interface {
	OnEventApplied(ctx context.Context, projection string, e framework.Event)
}

// HookEventSkipped is called for every event skipped as a duplicate of an
// applied one; verified is false when the runner could not compare event
// IDs (see the unverified counter).
type HookEventSkipped interface {
	OnEventSkipped(ctx context.Context, projection string, e framework.Event, verified bool)
}

// HookStreamParked is called when a stream is parked, after the park is
// stored.
type HookStreamParked interface {
	OnStreamParked(ctx context.Context, projection string, p controlplane.ParkedStream)
}

// hooks are the runner's hooks, sorted by interface once.
type hooks struct {
	applied []HookEventApplied
	skipped []HookEventSkipped
	parked  []HookStreamParked
}

func newHooks(hs []Hook) hooks {
	var h hooks
	for _, x := range hs {
		if a, ok := x.(HookEventApplied); ok {
			h.applied = append(h.applied, a)
		}
		if s, ok := x.(HookEventSkipped); ok {
			h.skipped = append(h.skipped, s)
		}
		if p, ok := x.(HookStreamParked); ok {
			h.parked = append(h.parked, p)
		}
	}
	return h
}

func (r *Runner) onApplied(ctx context.Context, e framework.Event) {
	for _, h := range r.hooks.applied {
		h.OnEventApplied(ctx, r.cfg.Projection.Name(), e)
	}
}

func (r *Runner) onSkipped(ctx context.Context, e framework.Event, verified bool) {
	for _, h := range r.hooks.skipped {
		h.OnEventSkipped(ctx, r.cfg.Projection.Name(), e, verified)
	}
}

func (r *Runner) onParked(ctx context.Context, p controlplane.ParkedStream) {
	for _, h := range r.hooks.parked {
		h.OnStreamParked(ctx, r.cfg.Projection.Name(), p)
	}
}

// retryable reports whether a failed apply is retried with backoff before
// the stream is parked: never for a permanent error
// ([framework.ErrPermanent], such as a payload that does not decode), else
// as Config.Retryable says (default: yes).
func (r *Runner) retryable(err error) bool {
	if framework.Permanent(err) {
		return false
	}
	return r.cfg.Retryable == nil || r.cfg.Retryable(err)
}
