package ops

import (
	"context"
	"errors"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/kafkarunner"
)

// Parked lists the parked streams of projection (a name as
// [Client.Projection] takes it), each with the retry or skip requested for
// it, if any.
func (c *Client) Parked(ctx context.Context, projection string) ([]controlplane.ParkedStream, error) {
	p, err := c.Projection(ctx, projection)
	if err != nil {
		return nil, err
	}
	return c.cfg.Admin.Parked(ctx, p.Name)
}

// ResolveRequest asks for a retry or a skip of a parked stream.
type ResolveRequest struct {
	Projection string
	StreamID   string
	// Action is controlplane.ResolveRetry or controlplane.ResolveSkip.
	Action string
	// By and Reason are recorded; a skip needs a reason.
	By, Reason string
	// Force skips a gap even to a sequence beyond what the stream shows in
	// Kafka; Drop (a gap only) passes over the parked record and keeps the
	// cursor. See controlplane.Resolution.
	Force, Drop bool
}

// Resolve records a retry or skip of a parked stream and returns the
// parked record it applies to. The replica owning the stream's partition
// carries it out (re-reading the held records from Kafka) and only then
// unparks the stream. The checks are kafkarunner.Resolver's: a retry of an
// event that can never apply, a skip without a reason, and a skip of a gap
// beyond what the stream shows in Kafka (unless Force or Drop) are
// refused. A stream that is not parked is [ErrNotFound] (and matches
// kafkarunner.ErrNotParked); a retired version is refused.
func (c *Client) Resolve(ctx context.Context, req ResolveRequest) (controlplane.ParkedStream, error) {
	p, err := c.Projection(ctx, req.Projection)
	if err != nil {
		return controlplane.ParkedStream{}, err
	}
	if err := p.Writable(); err != nil {
		return controlplane.ParkedStream{}, err
	}
	res := kafkarunner.Resolver{Parked: c.cfg.Admin, Checkpoints: c.cfg.Checkpoints, Seeds: c.cfg.Seeds, ClientOpts: c.cfg.ClientOpts,
		Topic: c.cfg.Topic, Group: p.Group}
	parked, err := res.Resolve(ctx, p.Name, controlplane.Resolution{
		StreamID: req.StreamID, Action: req.Action, By: req.By, Reason: req.Reason, Force: req.Force, Drop: req.Drop,
	})
	if errors.Is(err, kafkarunner.ErrNotParked) {
		return parked, &Error{Kind: ErrNotFound, Err: err}
	}
	return parked, err
}
