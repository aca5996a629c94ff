package kafkarunner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/kafkaio"
	"github.com/projector-dev/projector/kafkastore"
)

// A resume carries out an admin's retry or skip of streams parked in this
// partition. A parked stream remembers where it stopped (the partition and
// offset of its parked record); everything after that in the partition up
// to where this session has processed was held. The resume
//
//  1. applies a skip in memory: the cursor moves past the parked event (a
//     gap: to just before it), and the parked record is passed over;
//  2. re-reads the partition from the parked record to the session's
//     position directly from Kafka, for the streams' keys, and applies
//     their records in order, classified exactly as live records are
//     (duplicates, conflicts and gaps park the stream again, at the new
//     record; malformed and misplaced records are passed over and
//     reported: they were dead-lettered when they were met);
//  3. stores the cursors with the partition's fence (flush);
//  4. unparks each stream with the fence, only while it is still parked at
//     the same record (Unpark), recording what was done.
//
// Records after the session's position arrive through the poll loop after
// the resume, with the streams unparked. A crash, a revoke or a store
// error anywhere before step 4 leaves the streams parked with the request
// recorded: the next attempt (this worker's next refresh, or the next
// owner's) does it again, skipping what was applied by the cursors and the
// head's offset. A worker that lost the partition is refused at its first
// write. The resume never depends on the stream catalog, so it works for
// records of any producer.
type resuming struct {
	p        controlplane.ParkedStream
	from     int64 // first offset of the held records
	applied  int64
	passed   []string // records passed over, as "offset (why)"
	reparked bool
	// waiting are held events whose sequence is ahead of the stream
	// (their missing events may come later in the partition: a producer
	// that wrote out of order), by sequence.
	waiting []unit
}

// maxWaiting bounds the events a resume keeps waiting per stream for
// missing events that come later in the partition.
const maxWaiting = 10_000

func (s *session) resume(todo []controlplane.ParkedStream) error {
	ctx := s.ctx
	end := s.committed
	if s.last != nil {
		end = s.last.Offset + 1
	}
	byID := make(map[string]*resuming, len(todo))
	var unknown []string
	from := end
	for _, p := range todo {
		rs := &resuming{p: p}
		if p.Position != nil {
			rs.from, _ = p.HoldsFrom()
			if p.Position.Partition == s.p.id && p.Position.Offset >= end {
				// This session has not reached the parked record yet
				// (the previous owner parked it and stopped before
				// committing): it is read live first, then resumed.
				continue
			}
		}
		byID[p.StreamID] = rs
		if pseudoStream(p) {
			continue // no stream's records are held behind it
		}
		from = min(from, rs.from)
		if _, ok := s.cursors[p.StreamID]; !ok {
			unknown = append(unknown, p.StreamID)
		}
	}
	if len(byID) == 0 {
		return nil
	}
	if len(unknown) > 0 {
		if err := s.lookupHeads(ctx, unknown); err != nil {
			return err
		}
	}
	for _, rs := range byID {
		if rs.p.Resolving.Action == controlplane.ResolveSkip && !pseudoStream(rs.p) {
			s.skipInMemory(rs.p)
		}
	}
	// The skipped cursors are stored first: a store that checks sequences
	// as it applies (AtomicProjection) must see them.
	if err := s.flush(); err != nil {
		return err
	}

	s.resuming = byID
	defer func() { s.resuming = nil }()
	var batch []unit
	next := map[string]uint64{}
	inRun := map[streamSeq]string{}
	// apply applies the batch and stores the cursors it moved (a
	// projection not atomic with its cursors then repeats at most one
	// batch after a crash).
	apply := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := s.applyRun(ctx, batch)
		for _, u := range batch {
			if rs := byID[u.ev.StreamID]; rs != nil && !rs.reparked && s.cursors[u.ev.StreamID] >= u.ev.Sequence {
				rs.applied++
			}
		}
		batch = batch[:0]
		clear(next)
		clear(inRun)
		if err == nil {
			err = s.flush()
		}
		return err
	}
	// classify decides what to do with one held event of rs: apply it,
	// skip it, let it wait for missing events, or park the stream again.
	var classify func(rs *resuming, u unit) error
	classify = func(rs *resuming, u unit) error {
		e := u.ev
		cur, ok := next[e.StreamID]
		if !ok {
			cur = s.cursors[e.StreamID]
		}
		switch framework.Classify(cur, e) {
		case framework.Duplicate:
			v := s.duplicate(e, u.rec.Offset, inRun)
			if !v.conflict {
				s.r.metrics.skipped.Add(ctx, 1)
				s.r.onSkipped(ctx, e, v.verified)
				return nil
			}
			if err := apply(); err != nil || rs.reparked {
				return err
			}
			return s.park(ctx, e, u.rec, controlplane.ParkConflict, errors.New(v.reason), 0)
		case framework.Gap:
			if len(rs.waiting) >= maxWaiting {
				if err := apply(); err != nil || rs.reparked {
					return err
				}
				return s.parkWaiting(ctx, rs, cur)
			}
			// After the events waiting at the same sequence: the first
			// record of a sequence is its event, a later one a fork.
			i := len(rs.waiting)
			if e.Sequence < math.MaxUint64 {
				i, _ = slices.BinarySearchFunc(rs.waiting, e.Sequence+1, func(w unit, seq uint64) int { return cmp.Compare(w.ev.Sequence, seq) })
			}
			rs.waiting = slices.Insert(rs.waiting, i, u)
			return nil
		}
		batch = append(batch, u)
		next[e.StreamID] = e.Sequence
		inRun[streamSeq{e.StreamID, e.Sequence}] = e.EventID
		// Events that waited for this one follow it.
		for len(rs.waiting) > 0 && rs.waiting[0].ev.Sequence <= e.Sequence+1 && !rs.reparked {
			w := rs.waiting[0]
			rs.waiting = rs.waiting[1:]
			if err := classify(rs, w); err != nil {
				return err
			}
		}
		if len(batch) >= s.r.cfg.BatchSize {
			return apply()
		}
		return nil
	}
	err := kafkaio.ReadPartition(ctx, s.r.cfg.Seeds, s.r.cfg.ClientOpts, s.r.cfg.Topic, s.p.id, from, end, s.p.quitting, func(rec *kgo.Record) error {
		if s.p.quitting() { // revoked: the next owner carries on
			return errStopping
		}
		rs := byID[string(rec.Key)]
		if rs == nil || rs.reparked || rec.Offset < rs.from || pseudoStream(rs.p) {
			return nil
		}
		if rs.p.Position != nil && rec.Offset == rs.p.Position.Offset && passesOver(rs.p) {
			rs.passed = append(rs.passed, fmt.Sprintf("%d (the parked record, %s)", rec.Offset, rs.p.Resolving.Action))
			return nil
		}
		e, err := kafkastore.DecodeRecord(rec)
		if err != nil {
			rs.passed = append(rs.passed, fmt.Sprintf("%d (malformed: %v)", rec.Offset, err))
			return nil
		}
		if s.misplaced(rec) {
			rs.passed = append(rs.passed, fmt.Sprintf("%d (misplaced)", rec.Offset))
			return nil
		}
		return classify(rs, unit{ev: e, rec: rec, idx: -1})
	})
	if err == nil {
		err = apply()
	}
	// Events still waiting: their missing events are not in the
	// partition. The stream parks again at the first of them.
	for _, rs := range byID {
		if err != nil || rs.reparked || len(rs.waiting) == 0 {
			continue
		}
		err = s.parkWaiting(ctx, rs, s.cursors[rs.p.StreamID])
	}
	s.r.metrics.applied.Add(ctx, s.applied)
	s.applied = 0
	if errors.Is(err, errStopping) {
		return err
	}
	if err != nil {
		return fmt.Errorf("kafkarunner: resume parked streams of partition %d: %w", s.p.id, err)
	}
	name := s.r.cfg.Projection.Name()
	for _, rs := range byID {
		if rs.reparked {
			s.r.cfg.Logger.Warn("a resumed stream was parked again", "stream", rs.p.StreamID, "applied", rs.applied)
			continue
		}
		res := *rs.p.Resolving
		res.Parked = rs.p
		res.Parked.Resolving = nil
		res.Done = time.Now().UTC()
		res.Result = rs.result()
		ok, err := s.r.cfg.Parked.Unpark(ctx, name, res)
		if err != nil {
			return fmt.Errorf("kafkarunner: unpark %s: %w", rs.p.StreamID, err)
		}
		if !ok {
			s.r.cfg.Logger.Warn("a resumed stream was parked again or its request changed meanwhile; it stays parked", "stream", rs.p.StreamID)
			continue
		}
		delete(s.parked, rs.p.StreamID)
		s.p.parkedNow.Store(int64(len(s.parked)))
		s.r.metrics.passedOver.Add(ctx, int64(len(rs.passed)))
		if len(rs.passed) > 0 {
			s.r.cfg.Logger.Warn("resumed parked stream; records were passed over (their dead letters were written when they were met)",
				"stream", rs.p.StreamID, "action", res.Action, "by", res.By, "applied", rs.applied, "passed_over", strings.Join(rs.passed, "; "))
		} else {
			s.r.cfg.Logger.Info("resumed parked stream", "stream", rs.p.StreamID, "action", res.Action, "by", res.By, "applied", rs.applied)
		}
	}
	return nil
}

// parkWaiting parks rs's stream again as a gap at the waiting event with
// the lowest offset (the next resume reads from there, so every waiting
// event is read again).
func (s *session) parkWaiting(ctx context.Context, rs *resuming, cursor uint64) error {
	first := rs.waiting[0]
	for _, w := range rs.waiting[1:] {
		if w.rec.Offset < first.rec.Offset {
			first = w
		}
	}
	rs.waiting = nil
	gap := &framework.GapError{StreamID: first.ev.StreamID, Cursor: cursor, Got: first.ev.Sequence, EventID: first.ev.EventID}
	return s.park(ctx, first.ev, first.rec, controlplane.ParkGap, gap, 0)
}

// partial is the resolution rs carried out before its stream parked again
// at p: recorded with the new park, so that what a skip did is never lost
// from the audit.
func (rs *resuming) partial(p controlplane.ParkedStream) *controlplane.Resolution {
	res := *rs.p.Resolving
	res.Parked = rs.p
	res.Parked.Resolving = nil
	res.Done = time.Now().UTC()
	res.Result = fmt.Sprintf("%s; parked again at sequence %d (%s)", rs.result(), p.Sequence, p.Reason)
	return &res
}

func (rs *resuming) result() string {
	out := fmt.Sprintf("applied %d events", rs.applied)
	if len(rs.passed) > 0 {
		out += fmt.Sprintf("; passed over %d records at offsets %s", len(rs.passed), strings.Join(rs.passed, ", "))
	}
	return out
}

// passesOver reports whether the resume of p passes over its parked record
// rather than applying it: a skip (but for a gap, whose skip accepts the
// missing events and applies the parked one), or a record that does not
// decode.
func passesOver(p controlplane.ParkedStream) bool {
	return p.Reason == controlplane.ParkMalformed ||
		(p.Resolving.Action == controlplane.ResolveSkip && (p.Reason != controlplane.ParkGap || p.Resolving.Drop))
}

// skipInMemory moves a stream's cursor past its parked event (for a gap:
// to just before it, accepting the missing events), and records the
// parked event as the head, so that a redelivery of it is recognised.
func (s *session) skipInMemory(p controlplane.ParkedStream) {
	target := p.Sequence
	if p.Resolving.Drop {
		return // the record is passed over; the cursor stays
	}
	switch p.Reason {
	case controlplane.ParkGap:
		target = p.Sequence - 1
	case controlplane.ParkMalformed, controlplane.ParkMisplaced:
		return // not an event of the stream: its cursor stays
	}
	if target <= s.cursors[p.StreamID] {
		// A conflict: its sequence was applied as another event. The
		// skipped record is accounted for: the head's offset covers it,
		// so that it is a redelivery when read again.
		if h, ok := s.heads[p.StreamID]; ok && h.seq == s.cursors[p.StreamID] && p.Position != nil && p.Position.Partition == s.p.id &&
			h.offset < p.Position.Offset {
			h.offset = p.Position.Offset
			s.heads[p.StreamID] = h
			s.dirty[p.StreamID] = true
		}
		return
	}
	s.cursors[p.StreamID] = target
	s.dirty[p.StreamID] = true
	h := head{seq: target, offset: -1}
	if p.Position != nil && p.Position.Partition == s.p.id {
		h.offset = p.Position.Offset
		if p.Reason == controlplane.ParkGap {
			h.offset-- // the head is before the parked record
		}
	}
	if old, ok := s.heads[p.StreamID]; ok && old.offset > h.offset {
		h.offset = old.offset // the highest offset processed stays
	}
	if target == p.Sequence {
		h.eventID = p.EventID
		s.recent.Remember(p.StreamID, p.Sequence, p.EventID)
	}
	s.heads[p.StreamID] = h
}

// pseudoStream reports a parked entry that stands for a record rather than
// a stream (a malformed record without a valid stream ID as its key, a
// misplaced record): no stream's records are held behind it.
func pseudoStream(p controlplane.ParkedStream) bool {
	return strings.HasPrefix(p.StreamID, malformedPrefix) || strings.HasPrefix(p.StreamID, misplacedPrefix)
}

// Prefixes of the IDs of pseudo-streams.
const (
	malformedPrefix = "malformed/"
	misplacedPrefix = "misplaced/"
)
