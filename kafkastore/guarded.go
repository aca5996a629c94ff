package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/kafkaio"
)

// appendHook, when set (by tests), is called at each step of a guarded
// append: "reserved", "produced", "recorded", "committed", "registered";
// and of a single writer's append: "produced" (the events are
// acknowledged, the catalog entry not written yet).
var appendHook func(step, streamID string)

func hook(step, streamID string) {
	if appendHook != nil {
		appendHook(step, streamID)
	}
}

// guardedAppend is Append under Config.Guard: reserve the sequences in the
// registry, write the events and the catalog entry in a transaction of the
// Store's producer, record their offsets, commit, and move the registered
// head. See Writers in the package documentation.
func (s *Store) guardedAppend(ctx context.Context, streamID string, expected framework.ExpectedVersion, events []framework.EventData) (_ []framework.Event, err error) {
	// Failures before the transaction wrote nothing: say so, so that a
	// caller knows a retry is safe.
	submitted := false
	defer func() {
		var conflict *framework.VersionConflictError
		var placement *PlacementError
		if err != nil && !submitted && !errors.As(err, &conflict) && !errors.As(err, &placement) && !errors.Is(err, ErrNotWritten) {
			err = fmt.Errorf("%w: append to %s: %w", ErrNotWritten, streamID, err)
		}
	}()
	// A catalog rebuilt elsewhere may have found the stream written by
	// another producer, off its murmur2 partition.
	if err := s.refreshCatalog(ctx, catalogMaxAge); err != nil {
		return nil, err
	}
	s.mu.Lock()
	entry, known := s.streams[streamID]
	s.mu.Unlock()
	if known && entry.HeadSequence > 0 {
		if err := s.misplaced(entry); err != nil {
			return nil, err
		}
	}
	if len(events) == 0 {
		head, err := s.guardedHead(ctx, streamID)
		if err != nil {
			return nil, err
		}
		if !expected.Check(head) {
			return nil, &framework.VersionConflictError{StreamID: streamID, Expected: expected, Actual: head}
		}
		return nil, nil
	}
	res, err := s.reserve(ctx, streamID, expected, len(events))
	if err != nil {
		return nil, err
	}
	hook("reserved", streamID)
	pa := &pendingAppend{ctx: ctx, res: res, firstOffset: -1, done: make(chan struct{})}
	if res.Head.Sequence > 0 {
		if pa.firstOffset, err = s.firstOffset(ctx, streamID); err != nil {
			s.release(res)
			return nil, err
		}
	}
	pa.home = PartitionFor(streamID, s.partitions.Load())
	now := time.Now().UTC()
	pa.events = make([]framework.Event, len(events))
	pa.records = make([]*kgo.Record, len(events))
	for i, d := range events {
		id := d.EventID
		if id == "" {
			id = framework.NewEventID()
		}
		pa.events[i] = framework.Event{
			StreamID: streamID, Sequence: res.First + uint64(i), EventID: id, Type: d.Type,
			SchemaVersion: d.SchemaVersion, Data: d.Data, Metadata: d.Metadata, RecordedAt: now,
		}
		pa.records[i] = s.encodeRecord(ctx, pa.events[i])
	}
	if err := s.writer.submit(pa); err != nil {
		return nil, err
	}
	submitted = true
	<-pa.done
	if pa.err != nil {
		return nil, pa.err
	}
	return pa.events, nil
}

// reserve takes the reservation of n sequences of streamID: it seeds a
// stream the registry does not know from the topic, waits for a live
// reservation of another append to end, and repairs an expired one.
func (s *Store) reserve(ctx context.Context, streamID string, expected framework.ExpectedVersion, n int) (appendguard.Reservation, error) {
	backoff := 2 * time.Millisecond
	for {
		res, err := s.cfg.Guard.Reserve(ctx, streamID, expected, n, s.cfg.WriterID, s.cfg.AppendLease)
		var busy *appendguard.BusyError
		var expired *appendguard.ExpiredError
		switch {
		case err == nil:
			return res, nil
		case errors.Is(err, appendguard.ErrUnknownStream):
			if err := s.seed(ctx, streamID); err != nil {
				return res, err
			}
		case errors.As(err, &busy):
			wait := min(backoff, busy.Left+time.Millisecond)
			backoff = min(2*backoff, 50*time.Millisecond)
			if err := sleepCtx(ctx, wait); err != nil {
				return res, fmt.Errorf("kafkastore: append to %s: waiting for the append of writer %s: %w", streamID, busy.Writer, err)
			}
		case errors.As(err, &expired):
			if err := s.repair(ctx, expired.Reservation); err != nil {
				return res, err
			}
		default:
			if res.Token != "" {
				// Taken, but not durably (too few Redis replicas
				// acknowledged it): given back.
				s.release(res)
			}
			var conflict *framework.VersionConflictError
			if errors.As(err, &conflict) {
				return res, conflict
			}
			return res, fmt.Errorf("kafkastore: append to %s: reserve sequences: %w", streamID, err)
		}
	}
}

// guardedHead returns the stream's head: it takes a reservation (which
// seeds the stream, waits for an append in flight and repairs an expired
// one, as the registry's clock says) and gives it back at once.
func (s *Store) guardedHead(ctx context.Context, streamID string) (uint64, error) {
	res, err := s.reserve(ctx, streamID, framework.AnyVersion, 1)
	if err != nil {
		return 0, err
	}
	s.release(res)
	return res.Head.Sequence, nil
}

// seed registers the stream's head, read from the topic, with the
// registry.
func (s *Store) seed(ctx context.Context, streamID string) error {
	if err := s.refreshCatalog(ctx, 0); err != nil {
		return err
	}
	s.mu.Lock()
	entry, known := s.streams[streamID]
	s.mu.Unlock()
	var head CatalogEntry
	var err error
	if known {
		if entry.HeadSequence > 0 {
			if err := s.misplaced(entry); err != nil {
				return err
			}
		}
		head, err = s.rescanHead(ctx, entry)
	} else {
		head, err = s.uncatalogedHead(ctx, streamID, true)
	}
	if err != nil {
		return err
	}
	h := appendguard.Head{Sequence: head.HeadSequence, Offset: -1}
	if head.HeadSequence > 0 {
		h.Offset = head.HeadOffset
	}
	if _, err := s.cfg.Guard.Seed(ctx, streamID, h); err != nil {
		return fmt.Errorf("kafkastore: register the head of %s: %w", streamID, err)
	}
	return nil
}

// firstOffset returns the offset of the stream's first record, for its
// catalog entry.
func (s *Store) firstOffset(ctx context.Context, streamID string) (int64, error) {
	for refreshed := false; ; refreshed = true {
		s.mu.Lock()
		entry, known := s.streams[streamID]
		s.mu.Unlock()
		if known {
			return entry.FirstOffset, nil
		}
		if refreshed {
			break
		}
		if err := s.refreshCatalog(ctx, 0); err != nil {
			return 0, err
		}
	}
	head, err := s.uncatalogedHead(ctx, streamID, true)
	if err != nil {
		return 0, err
	}
	return head.FirstOffset, nil
}

// repair ends an expired reservation: it fences the reservation's
// producer, so that Kafka aborts its open transaction and refuses its
// commit, then looks at the recorded offsets for its records and resolves
// it as written (all there) or not.
func (s *Store) repair(ctx context.Context, p appendguard.Reservation) error {
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.AppendLease+s.cfg.RequestTimeout)
	defer cancel()
	fail := func(what string, err error) error {
		return fmt.Errorf("kafkastore: repair the unfinished append of sequences %d-%d to %s by writer %s: %s: %w",
			p.First, p.Last(), p.StreamID, p.Writer, what, err)
	}
	if err := s.fence(ctx, p.Writer); err != nil {
		return fail("fence its producer", err)
	}
	if p.Writer == s.cfg.WriterID {
		s.writer.fencedOutside()
	}
	written := false
	if p.FirstOffset >= 0 {
		var err error
		if written, err = s.committedIn(ctx, p); err != nil {
			return fail("read its records", err)
		}
	}
	if err := s.cfg.Guard.Resolve(ctx, p, written, p.LastOffset); err != nil {
		return fail("resolve it", err)
	}
	s.cfg.Logger.Warn("kafkastore: repaired an append whose writer did not finish within its lease",
		"stream", p.StreamID, "first", p.First, "last", p.Last(), "writer", p.Writer, "written", written)
	return nil
}

// fence bumps the epoch of the producer with transactional ID txid, as a
// new instance of it would: Kafka aborts its open transaction (or
// completes one whose commit it already accepted) before answering, and
// refuses anything later from the old epoch.
func (s *Store) fence(ctx context.Context, txid string) error {
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = &txid
		req.TransactionTimeoutMillis = int32(s.cfg.AppendLease.Milliseconds())
		req.ProducerID, req.ProducerEpoch = -1, -1
		resp, err := req.RequestWith(ctx, s.producer)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, kerr.ConcurrentTransactions), errors.Is(err, kerr.CoordinatorLoadInProgress),
			errors.Is(err, kerr.NotCoordinator), errors.Is(err, kerr.CoordinatorNotAvailable), kafkaio.Transient(err):
			// A coordinator finishing the transaction, moving, or not
			// reachable yet after a broker restart.
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// committedIn reports whether the records of reservation p, at its
// recorded offsets, are committed: it waits until the partition's last
// stable offset is past them (p's producer was fenced, so its transaction
// has ended), then reads them as a read-committed consumer does.
func (s *Store) committedIn(ctx context.Context, p appendguard.Reservation) (bool, error) {
	topic := s.cfg.Topic
	partition := p.Partition
	if partition < 0 {
		return false, fmt.Errorf("no partition recorded with offsets %d-%d", p.FirstOffset, p.LastOffset)
	}
	for {
		ends, err := kafkaio.ListOffsets(ctx, s.admin.ListCommittedOffsets, topic)
		if err != nil {
			return false, err
		}
		end, ok := ends.Lookup(topic, partition)
		if ok && end.Err == nil && end.Offset > p.LastOffset {
			break
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return false, fmt.Errorf("waiting for the last stable offset of %s/%d to pass %d: %w", topic, partition, p.LastOffset, err)
		}
	}
	found := map[uint64]bool{}
	err := s.scanRange(ctx, topic, partition, p.FirstOffset, p.LastOffset+1, func(r *kgo.Record) error {
		if string(r.Key) != p.StreamID {
			return nil
		}
		e, err := DecodeRecord(r)
		if err != nil {
			return err
		}
		if e.Sequence >= p.First && e.Sequence <= p.Last() {
			found[e.Sequence] = true
		}
		return nil
	})
	switch {
	case err != nil:
		return false, err
	case len(found) == 0:
		return false, nil
	case len(found) == p.N:
		return true, nil
	default:
		return false, fmt.Errorf("%d of its %d records are committed in %s/%d offsets %d-%d", len(found), p.N, topic, partition, p.FirstOffset, p.LastOffset)
	}
}

// release ends a reservation whose records were not committed. A failure
// leaves it to expire and be repaired.
func (s *Store) release(r appendguard.Reservation) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.cfg.Guard.Resolve(ctx, r, false, -1); err != nil {
		s.cfg.Logger.Warn("kafkastore: could not release an append reservation; the next append to the stream repairs it after its lease",
			"stream", r.StreamID, "err", err)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
