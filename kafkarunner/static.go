package kafkarunner

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Static membership (Config.InstanceID): what the runner adds to franz-go's.

// instanceFencedHook watches the group management loop for the errors
// that mean another member holds this replica's instance ID.
//
// FENCED_INSTANCE_ID (classic protocol): a newer member joined with the
// ID and took its place. franz-go has called OnPartitionsLost before the
// hook (the partitions stopped without committing); it would rejoin after
// a backoff and fence the other member in turn, so the hook cancels the
// client's context, which ends that backoff, and has the poll loop stop
// the runner with ErrInstanceFenced.
//
// UNRELEASED_INSTANCE_ID (KIP-848): the broker still holds the ID for a
// member that has not left: the previous incarnation of this replica
// until its session expires (a restart after SIGKILL), or a live replica
// with the same ID. Waiting is right for the first and harmless for the
// second (this replica never joins; readiness and LastError say why), so
// franz-go keeps retrying with its backoff.
type instanceFencedHook struct {
	r      *Runner
	cancel context.CancelFunc
}

var _ kgo.HookGroupManageError = (*instanceFencedHook)(nil)

func (h *instanceFencedHook) OnGroupManageError(err error) {
	r := h.r
	switch {
	case errors.Is(err, kerr.UnreleasedInstanceID):
		r.setLastError(fmt.Errorf("kafkarunner: instance ID %q (group %s) is held by another member: %w; waiting until it is released "+
			"(the session of this replica's previous incarnation expires), or, if another live replica has the same instance ID "+
			"(PROJECTOR_KAFKA_INSTANCE_ID), until it stops: give each replica its own", r.cfg.InstanceID, r.cfg.Group, err))
		r.cfg.Logger.Warn("instance ID held by another member; retrying", "group", r.cfg.Group, "instance_id", r.cfg.InstanceID, "err", err)
		return
	case !errors.Is(err, kerr.FencedInstanceID):
		return
	}
	r.fencedOnce.Do(func() {
		r.fenced.Store(&fencedErr{fmt.Errorf("%w %q (group %s): %w; this replica stops without committing or writing "+
			"and does not rejoin. If this replica had been stopped or cut off, its new incarnation took over; "+
			"if not, two live replicas are configured with the same instance ID (PROJECTOR_KAFKA_INSTANCE_ID): give each its own",
			ErrInstanceFenced, r.cfg.InstanceID, r.cfg.Group, err)})
	})
	r.setLastError(r.instanceFenced())
	r.cfg.Logger.Error("instance ID fenced by another group member", "group", r.cfg.Group, "instance_id", r.cfg.InstanceID, "err", err)
	h.cancel()
	r.wake()
}

type fencedErr struct{ err error }

// instanceFenced returns the ErrInstanceFenced error once the hook saw
// the instance ID taken, else nil.
func (r *Runner) instanceFenced() error {
	if f := r.fenced.Load(); f != nil {
		return f.err
	}
	return nil
}
