package kafkarunner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/internal/kafkaio"
	"github.com/projector-dev/projector/kafkastore"
)

// ErrNotParked reports a retry or skip of a stream that is not parked.
var ErrNotParked = errors.New("kafkarunner: stream is not parked")

// Parked lists the projection's parked streams.
func (r *Runner) Parked(ctx context.Context) ([]controlplane.ParkedStream, error) {
	return r.cfg.Parked.Parked(ctx, r.cfg.Projection.Name())
}

// RetryParked requests that a parked stream resume at the event it stopped
// at; see [Resolver.Resolve]. by and reason are recorded.
func (r *Runner) RetryParked(ctx context.Context, streamID, by, reason string) error {
	_, err := r.Resolver().Resolve(ctx, r.cfg.Projection.Name(), controlplane.Resolution{
		StreamID: streamID, Action: controlplane.ResolveRetry, By: by, Reason: reason,
	})
	return err
}

// SkipParked requests that a parked stream resume after the event it
// stopped at; see [Resolver.Resolve]. A reason is required.
func (r *Runner) SkipParked(ctx context.Context, streamID, by, reason string) error {
	_, err := r.Resolver().Resolve(ctx, r.cfg.Projection.Name(), controlplane.Resolution{
		StreamID: streamID, Action: controlplane.ResolveSkip, By: by, Reason: reason,
	})
	return err
}

// Resolver returns a Resolver for the runner's projection.
func (r *Runner) Resolver() Resolver {
	return Resolver{Parked: r.cfg.Parked, Checkpoints: r.cfg.Checkpoints, Seeds: r.cfg.Seeds, ClientOpts: r.cfg.ClientOpts,
		Topic: r.cfg.Topic, Group: r.cfg.Group}
}

// Resolver records an admin's retry or skip of a parked stream, for admin
// tools that run beside the replicas. It checks the request against the
// stream's records in Kafka; the worker owning the stream's partition
// carries it out within its Config.ParkedRefresh (or when it next
// owns the partition): it re-reads the partition from the parked record
// for the stream's key, applies what was held in order, and only then
// unparks the stream.
type Resolver struct {
	Parked      controlplane.ParkStore
	Checkpoints controlplane.CheckpointStore // the stream's cursor, for the skip bound
	// Seeds, ClientOpts, Topic and Group say where the held records are:
	// the bound of a skip is checked against them.
	Seeds      []string
	ClientOpts []kgo.Opt
	Topic      string
	Group      string // the projection's consumer group (informational)
}

// Resolve records res for the parked stream res.StreamID of projection and
// returns the parked record it applies to. It refuses:
//
//   - a retry of an event that can never apply: a conflict (its sequence
//     was applied as another event), a partial apply (the read model holds
//     part of it), a misplaced record (not in its stream's partition);
//   - a skip without a reason;
//   - a skip of a gap that would move the cursor beyond what the stream
//     shows in Kafka (a sequence more than one past the highest sequence
//     held behind it, or past held events that would then be dropped as
//     duplicates), unless res.Force is set. A skip of a gap with res.Drop
//     passes over the parked record instead and keeps the cursor.
//
// A retry of a malformed record resumes the stream behind it: the record
// does not decode and is passed over (it was dead-lettered).
func (v Resolver) Resolve(ctx context.Context, projection string, res controlplane.Resolution) (controlplane.ParkedStream, error) {
	if res.By == "" {
		return controlplane.ParkedStream{}, errors.New("kafkarunner: resolving a parked stream needs who does it")
	}
	if res.Action == controlplane.ResolveSkip && strings.TrimSpace(res.Reason) == "" {
		return controlplane.ParkedStream{}, errors.New("kafkarunner: skipping a parked stream needs a reason; it is recorded")
	}
	list, err := v.Parked.Parked(ctx, projection)
	if err != nil {
		return controlplane.ParkedStream{}, err
	}
	i := slices.IndexFunc(list, func(p controlplane.ParkedStream) bool { return p.StreamID == res.StreamID })
	if i < 0 {
		return controlplane.ParkedStream{}, fmt.Errorf("%w: %s of %s", ErrNotParked, res.StreamID, projection)
	}
	p := list[i]
	if r := p.Resolving; r != nil {
		return p, fmt.Errorf("kafkarunner: a %s of %s of %s was requested by %s at %s and is carried out by the replica owning its partition: wait until it is done (parked list shows it until then)",
			r.Action, p.StreamID, projection, r.By, r.At.Format(time.RFC3339))
	}
	switch res.Action {
	case controlplane.ResolveRetry:
		if err := neverApplies(p, projection); err != nil {
			return p, err
		}
	case controlplane.ResolveSkip:
		if res.Drop && p.Reason != controlplane.ParkGap {
			return p, fmt.Errorf("kafkarunner: %s of %s is parked at a %s, not a gap: a skip passes over its record already (drop is for a gap's record with a bogus sequence)", p.StreamID, projection, p.Reason)
		}
		if p.Reason == controlplane.ParkGap && !res.Force && !res.Drop {
			if err := v.checkSkip(ctx, projection, p); err != nil {
				return p, err
			}
		}
	default:
		return p, fmt.Errorf("kafkarunner: unknown resolution %q (want retry or skip)", res.Action)
	}
	res.At = time.Now().UTC()
	res.Parked = p
	res.Parked.Resolving = nil
	ok, err := v.Parked.RequestResolution(ctx, projection, res)
	if err != nil {
		return p, err
	}
	if !ok {
		if p.Resolving != nil {
			return p, fmt.Errorf("kafkarunner: a %s of %s of %s was requested by %s at %s and is carried out by the replica owning its partition: wait until it is done (parked list shows it until then)",
				p.Resolving.Action, p.StreamID, projection, p.Resolving.By, p.Resolving.At.Format(time.RFC3339))
		}
		return p, fmt.Errorf("kafkarunner: %s of %s was parked again or resolved meanwhile; list it again", p.StreamID, projection)
	}
	return p, nil
}

// neverApplies refuses a retry of a parked event that cannot apply.
func neverApplies(p controlplane.ParkedStream, projection string) error {
	switch p.Reason {
	case controlplane.ParkPartialApply:
		return fmt.Errorf("kafkarunner: %s of %s was parked because the store applied part of sequence %d: applying it again would add those writes twice; replay the projection (or skip the event with a reason, leaving the read model as it is)",
			p.StreamID, projection, p.Sequence)
	case controlplane.ParkConflict:
		return fmt.Errorf("kafkarunner: %s of %s: event %s repeats sequence %d, which was applied as another event; it can never apply: skip it with a reason (the stream then goes on after it)",
			p.StreamID, projection, p.EventID, p.Sequence)
	case controlplane.ParkMisplaced:
		return fmt.Errorf("kafkarunner: %s of %s: the record is not in its stream's partition and can never apply in order: publish it again with a murmur2 partitioner, then skip this one with a reason",
			p.StreamID, projection)
	}
	return nil
}

// checkSkip refuses to skip a gap to a sequence the stream cannot hold:
// skipping a gap moves the cursor to one before the parked event, so that
// must not pass events held behind it, nor be more than one past the
// highest sequence the stream shows.
func (v Resolver) checkSkip(ctx context.Context, projection string, p controlplane.ParkedStream) error {
	force := "; to pass over the parked record instead, keeping the cursor (a bogus sequence), use --drop (Resolution.Drop); to skip anyway, --force (Resolution.Force)"
	if v.Checkpoints == nil || len(v.Seeds) == 0 || v.Topic == "" || p.Position == nil {
		return fmt.Errorf("kafkarunner: skipping the gap of %s of %s moves its cursor to %d and cannot be checked against Kafka here%s", p.StreamID, projection, p.Sequence-1, force)
	}
	cursors, err := v.Checkpoints.Cursors(ctx, projection, []string{p.StreamID})
	if err != nil {
		return fmt.Errorf("kafkarunner: cursor of %s: %w", p.StreamID, err)
	}
	cursor := cursors[p.StreamID]
	held, err := v.held(ctx, p)
	if err != nil {
		return err
	}
	top := cursor
	var dropped []uint64
	for _, seq := range held {
		top = max(top, seq)
		if seq > cursor && seq < p.Sequence {
			dropped = append(dropped, seq)
		}
	}
	switch {
	case len(dropped) > 0:
		return fmt.Errorf("kafkarunner: skipping the gap of %s of %s would move its cursor from %d to %d, past %d events held behind it (sequences %s): they would be dropped as duplicates%s",
			p.StreamID, projection, cursor, p.Sequence-1, len(dropped), seqList(dropped), force)
	case p.Sequence > top+1:
		return fmt.Errorf("kafkarunner: skipping the gap of %s of %s would move its cursor from %d to %d, but the stream shows no sequence above %d in partition %d: sequence %d looks impossible%s",
			p.StreamID, projection, cursor, p.Sequence-1, top, p.Position.Partition, p.Sequence, force)
	}
	return nil
}

// held returns the sequences of the stream's records held behind its
// parked record in Kafka (from where it is held, the parked record
// excepted) up to the partition's last stable offset: what the stream
// shows.
func (v Resolver) held(ctx context.Context, p controlplane.ParkedStream) ([]uint64, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(v.Seeds...)}, v.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafkarunner: client: %w", err)
	}
	ends, err := kafkaio.ListOffsets(ctx, kadm.NewClient(cl).ListCommittedOffsets, v.Topic)
	cl.Close()
	if err != nil {
		return nil, fmt.Errorf("kafkarunner: end offsets of %s: %w", v.Topic, err)
	}
	end := int64(-1)
	if o, ok := ends.Lookup(v.Topic, p.Position.Partition); ok && o.Err == nil {
		end = o.Offset
	}
	from, _ := p.HoldsFrom()
	var seqs []uint64
	err = kafkaio.ReadPartition(ctx, v.Seeds, v.ClientOpts, v.Topic, p.Position.Partition, from, end, nil, func(rec *kgo.Record) error {
		if string(rec.Key) != p.StreamID || rec.Offset == p.Position.Offset {
			return nil
		}
		if e, err := kafkastore.DecodeRecord(rec); err == nil {
			seqs = append(seqs, e.Sequence)
		}
		return nil
	})
	return seqs, err
}

// seqList shows a few sequences.
func seqList(seqs []uint64) string {
	var b strings.Builder
	for i, s := range seqs {
		if i == 5 {
			fmt.Fprintf(&b, " … (%d in all)", len(seqs))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, s)
	}
	return b.String()
}

// memoryParkStore keeps parked streams in memory, for runners without a
// shared store (tests, demos).
type memoryParkStore struct {
	mu          sync.Mutex
	parked      map[string]map[string]controlplane.ParkedStream
	resolutions []controlplane.Resolution
}

func (m *memoryParkStore) Park(_ context.Context, projection string, p controlplane.ParkedStream) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.parked == nil {
		m.parked = map[string]map[string]controlplane.ParkedStream{}
	}
	if m.parked[projection] == nil {
		m.parked[projection] = map[string]controlplane.ParkedStream{}
	}
	if p.Resolving != nil { // carried out in part before this park
		r := *p.Resolving
		m.resolutions = append(m.resolutions, r)
	}
	p.Resolving = nil
	m.parked[projection][p.StreamID] = p
	return nil
}

func (m *memoryParkStore) UpdateParked(_ context.Context, projection string, p controlplane.ParkedStream) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.parked[projection][p.StreamID]
	if !ok || old.Sequence != p.Sequence || !old.ParkedAt.Equal(p.ParkedAt) {
		return false, nil
	}
	p.Resolving = old.Resolving
	m.parked[projection][p.StreamID] = p
	return true, nil
}

func (m *memoryParkStore) Parked(_ context.Context, projection string) ([]controlplane.ParkedStream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []controlplane.ParkedStream
	for _, p := range m.parked[projection] {
		if p.Resolving != nil {
			r := *p.Resolving
			p.Resolving = &r
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b controlplane.ParkedStream) int { return strings.Compare(a.StreamID, b.StreamID) })
	return out, nil
}

func (m *memoryParkStore) RequestResolution(_ context.Context, projection string, r controlplane.Resolution) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.parked[projection][r.StreamID]
	if !ok || p.Sequence != r.Parked.Sequence || !p.ParkedAt.Equal(r.Parked.ParkedAt) || p.Resolving != nil {
		return false, nil
	}
	p.Resolving = &r
	m.parked[projection][r.StreamID] = p
	return true, nil
}

func (m *memoryParkStore) Unpark(_ context.Context, projection string, r controlplane.Resolution) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.parked[projection][r.StreamID]
	if !ok || p.Sequence != r.Parked.Sequence || !p.ParkedAt.Equal(r.Parked.ParkedAt) ||
		(p.Resolving != nil && !r.At.IsZero() && !p.Resolving.At.Equal(r.At)) {
		return false, nil
	}
	delete(m.parked[projection], r.StreamID)
	r.Parked.Resolving = nil
	m.resolutions = append(m.resolutions, r)
	return true, nil
}
