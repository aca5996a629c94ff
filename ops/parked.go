package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/internal/kafkaio"
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

// ParkedRecord is the Kafka record a stream is parked at, as
// [Client.ParkedRecord] read it.
type ParkedRecord struct {
	Parked    controlplane.ParkedStream
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Headers   []kgo.RecordHeader
	// Value is the record's payload, at most the limit asked for;
	// ValueSize is its full size.
	Value     []byte
	ValueSize int
	Timestamp time.Time
}

// parkedRecordTimeout bounds the read of one parked record.
const parkedRecordTimeout = 10 * time.Second

// ParkedRecord reads the record the parked stream streamID of projection
// stopped at from Kafka (at its position, with a client of its own, as a
// retry re-reads it), keeping at most maxValue bytes of its payload. A
// stream that is not parked is [ErrNotFound]; one parked without a
// position (nothing to read) is [ErrNotFound] too. It needs Config.Seeds.
func (c *Client) ParkedRecord(ctx context.Context, projection, streamID string, maxValue int) (ParkedRecord, error) {
	list, err := c.Parked(ctx, projection)
	if err != nil {
		return ParkedRecord{}, err
	}
	i := slices.IndexFunc(list, func(p controlplane.ParkedStream) bool { return p.StreamID == streamID })
	if i < 0 {
		return ParkedRecord{}, notFound("%s of %s is not parked", streamID, projection)
	}
	out := ParkedRecord{Parked: list[i], Topic: c.cfg.Topic}
	pos := list[i].Position
	if pos == nil {
		return out, notFound("%s of %s is parked without a position in Kafka: there is no record to show", streamID, projection)
	}
	if len(c.cfg.Seeds) == 0 {
		return out, errors.New("ops: reading a parked record needs Kafka's seed brokers (Config.Seeds)")
	}
	out.Partition, out.Offset = pos.Partition, pos.Offset
	// Where the partition starts and ends now: a position outside (deleted
	// by retention, or beyond the end of a recreated topic) is answered at
	// once, not after a read that waits for a record that never comes.
	if adm, err := c.kafka("reading a parked record"); err == nil {
		gone := func(why string) error {
			return notFound("the parked record of %s at %s/%d offset %d is no longer in Kafka (%s)", streamID, c.cfg.Topic, pos.Partition, pos.Offset, why)
		}
		starts, err := adm.ListStartOffsets(ctx, c.cfg.Topic)
		if err != nil {
			return out, fmt.Errorf("ops: start offsets of %s: %w", c.cfg.Topic, err)
		}
		ends, err := adm.ListEndOffsets(ctx, c.cfg.Topic)
		if err != nil {
			return out, fmt.Errorf("ops: end offsets of %s: %w", c.cfg.Topic, err)
		}
		if st, ok := starts.Lookup(c.cfg.Topic, pos.Partition); ok && st.Err == nil && pos.Offset < st.Offset {
			return out, gone(fmt.Sprintf("the partition starts at offset %d", st.Offset))
		}
		if en, ok := ends.Lookup(c.cfg.Topic, pos.Partition); ok && en.Err == nil && pos.Offset >= en.Offset {
			return out, gone(fmt.Sprintf("the partition ends at offset %d", en.Offset))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, parkedRecordTimeout)
	defer cancel()
	found := false
	err = kafkaio.ReadPartition(ctx, c.cfg.Seeds, c.cfg.ClientOpts, c.cfg.Topic, pos.Partition, pos.Offset, pos.Offset+1, nil, func(r *kgo.Record) error {
		found = true
		out.Key, out.Headers, out.Timestamp, out.ValueSize = r.Key, r.Headers, r.Timestamp, len(r.Value)
		out.Value = r.Value[:min(len(r.Value), max(maxValue, 0))]
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("ops: reading the parked record of %s at %s/%d offset %d: %w", streamID, c.cfg.Topic, pos.Partition, pos.Offset, err)
	}
	if !found {
		return out, notFound("the parked record of %s at %s/%d offset %d is no longer in Kafka", streamID, c.cfg.Topic, pos.Partition, pos.Offset)
	}
	return out, nil
}
