package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/projector-dev/projector/framework"
)

// ErrNotParked reports a retry or skip of a stream that is not parked.
var ErrNotParked = errors.New("kafkastore: stream is not parked")

// Parked lists the projection's parked streams.
func (r *Runner) Parked(ctx context.Context) ([]framework.ParkedStream, error) {
	return r.cfg.Parked.Parked(ctx, r.cfg.Projection.Name())
}

// RetryParked resumes a parked stream at the event it stopped at: the
// worker owning its partition re-reads the stream from the event store
// after its cursor within RunnerConfig.ParkedRefresh. by and reason are
// recorded.
func (r *Runner) RetryParked(ctx context.Context, streamID, by, reason string) error {
	return ResolveParked(ctx, r.cfg.Parked, nil, r.cfg.Projection.Name(), framework.Resolution{
		StreamID: streamID, Action: framework.ResolveRetry, By: by, Reason: reason,
	})
}

// SkipParked resumes a parked stream after the event it stopped at: that
// event is never applied. The cursor moves over it, and who, when and why
// are recorded. A reason is required. For a stream parked at a gap, skipping
// accepts the missing events: the stream resumes at the parked event.
func (r *Runner) SkipParked(ctx context.Context, streamID, by, reason string) error {
	return ResolveParked(ctx, r.cfg.Parked, r.cfg.Checkpoints, r.cfg.Projection.Name(), framework.Resolution{
		StreamID: streamID, Action: framework.ResolveSkip, By: by, Reason: reason,
	})
}

// ResolveParked retries or skips a parked stream of projection, for admin
// tools that run beside the replicas (the replicas notice within their
// ParkedRefresh). Skipping advances the stream's cursor in checkpoints over
// the parked event; checkpoints may be nil for a retry.
func ResolveParked(ctx context.Context, parked ParkStore, checkpoints framework.ProjectionCheckpointStore, projection string, res framework.Resolution) error {
	if res.By == "" {
		return errors.New("kafkastore: resolving a parked stream needs who does it")
	}
	if res.Action == framework.ResolveSkip && strings.TrimSpace(res.Reason) == "" {
		return errors.New("kafkastore: skipping a parked stream needs a reason; it is recorded")
	}
	list, err := parked.Parked(ctx, projection)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(list, func(p framework.ParkedStream) bool { return p.StreamID == res.StreamID })
	if i < 0 {
		return fmt.Errorf("%w: %s of %s", ErrNotParked, res.StreamID, projection)
	}
	p := list[i]
	switch res.Action {
	case framework.ResolveRetry:
		if p.Reason == framework.ParkPartialApply {
			return fmt.Errorf("kafkastore: %s of %s was parked because the store applied part of sequence %d: applying it again would add those writes twice; replay the projection (or skip the event with a reason, leaving the read model as it is)",
				p.StreamID, projection, p.Sequence)
		}
	case framework.ResolveSkip:
		if checkpoints == nil {
			return errors.New("kafkastore: skipping needs the checkpoint store")
		}
		// Skipping a gap accepts the missing events: the stream resumes
		// at the parked event. Otherwise the parked event itself is
		// never applied.
		to := p.Sequence
		if p.Reason == framework.ParkGap {
			to--
		}
		if to > 0 && p.Reason != framework.ParkMalformed {
			if err := checkpoints.Advance(ctx, projection, map[string]uint64{p.StreamID: to}); err != nil {
				return fmt.Errorf("kafkastore: move the cursor of %s to %d: %w", p.StreamID, to, err)
			}
		}
	default:
		return fmt.Errorf("kafkastore: unknown resolution %q (want retry or skip)", res.Action)
	}
	res.At = time.Now().UTC()
	if _, err := parked.Unpark(ctx, projection, res); err != nil {
		return err
	}
	return nil
}

// memoryParkStore keeps parked streams in memory, for runners without a
// shared store (tests, demos).
type memoryParkStore struct {
	mu          sync.Mutex
	parked      map[string]map[string]framework.ParkedStream
	resolutions []framework.Resolution
}

func (m *memoryParkStore) Park(_ context.Context, projection string, p framework.ParkedStream) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.parked == nil {
		m.parked = map[string]map[string]framework.ParkedStream{}
	}
	if m.parked[projection] == nil {
		m.parked[projection] = map[string]framework.ParkedStream{}
	}
	m.parked[projection][p.StreamID] = p
	return nil
}

func (m *memoryParkStore) UpdateParked(_ context.Context, projection string, p framework.ParkedStream) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.parked[projection][p.StreamID]
	if !ok || old.Sequence != p.Sequence || !old.ParkedAt.Equal(p.ParkedAt) {
		return false, nil
	}
	m.parked[projection][p.StreamID] = p
	return true, nil
}

func (m *memoryParkStore) Parked(_ context.Context, projection string) ([]framework.ParkedStream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []framework.ParkedStream
	for _, p := range m.parked[projection] {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b framework.ParkedStream) int { return strings.Compare(a.StreamID, b.StreamID) })
	return out, nil
}

func (m *memoryParkStore) Unpark(_ context.Context, projection string, r framework.Resolution) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.parked[projection][r.StreamID]
	if !ok {
		return false, nil
	}
	delete(m.parked[projection], r.StreamID)
	r.Parked = p
	m.resolutions = append(m.resolutions, r)
	return true, nil
}
