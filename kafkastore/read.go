package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/kafkaio"
)

// ReadStream implements [framework.EventStore]. It reads one partition:
// for a stream the catalog records, the partition it records, from the
// stream's first offset, to the partition's last stable offset taken when
// the call begins, not only to the catalog's head, so events appended
// after the catalog entry are returned too; what lies beyond the head is
// read once per Store and remembered per key, so a later call reads only
// what was added since. Other streams' records are skipped. Memory is
// bounded by Config.ReadBatchBytes, plus the remembered keys.
//
// For a stream the catalog lacks (written by another producer, or before
// its catalog entry was written) it first finds the stream's records on
// every partition (the first such call of a Store reads the whole topic,
// later ones what was added since; see docs/kafkastore.md for the cost),
// then reads them from the one partition that holds them, as it reads a
// cataloged stream.
//
// ReadStream never ends a stream silently short: a stream on several
// partitions (split, whether the catalog records it so or not), a sequence
// above the previous one plus one, or a catalog head the partition does not
// hold ends the iteration with a [*PlacementError] (matching
// [ErrMisplaced]) naming the stream, the partitions and what is wrong; a
// split stream yields no event. A repeated sequence is yielded: the
// consumer tells a duplicate from a conflict by the event ID. A record of
// the stream that does not decode ends the iteration with a [*RecordError].
//
// A stream whose records are all on one partition other than its key's
// murmur2 partition (off-home) is read from there, whether the catalog
// knows it or not; Append refuses it.
func (s *Store) ReadStream(ctx context.Context, streamID string, after uint64) iter.Seq2[framework.Event, error] {
	return func(yield func(framework.Event, error) bool) {
		if err := framework.ValidateStreamID(streamID); err != nil {
			yield(framework.Event{}, err)
			return
		}
		if s.isClosed() {
			yield(framework.Event{}, ErrClosed)
			return
		}
		entry, known, err := s.Entry(ctx, streamID)
		if err != nil {
			yield(framework.Event{}, err)
			return
		}
		err = s.readStream(ctx, streamID, entry, known, after, yield)
		if err != nil && !errors.Is(err, errStop) {
			yield(framework.Event{}, err)
		}
	}
}

// endOffsets lists the last stable offset of every partition of the event
// topic and returns them with the partition count.
func (s *Store) endOffsets(ctx context.Context) (kadm.ListedOffsets, int32, error) {
	topic := s.cfg.Topic
	ends, err := kafkaio.ListOffsets(ctx, s.admin.ListCommittedOffsets, topic)
	if err != nil {
		return nil, 0, fmt.Errorf("kafkastore: end offsets of %s: %w", topic, err)
	}
	n := int32(len(ends[topic]))
	if n == 0 {
		return nil, 0, fmt.Errorf("kafkastore: topic %s has no partitions", topic)
	}
	s.partitions.Store(n)
	return ends, n, nil
}

// sequenceCheck passes on the events of one stream after after, in the
// order of their records, fails at a gap and at a fork, and passes over a
// record that repeats an event (same sequence, same event ID).
type sequenceCheck struct {
	streamID string
	home     int32 // the key's murmur2 partition, for the error
	after    uint64
	next     uint64 // the sequence the caller expects next
	yield    func(framework.Event, error) bool

	// The highest sequence seen on any record of the stream, with its
	// event: a record at or below it repeats a sequence.
	top       uint64
	topID     string
	topOffset int64
	first     int64 // the offset of the stream's first record seen
	// find returns the event ID and offset of the stream's first record
	// holding seq in [from, until): the original of a repeat.
	find func(partition int32, from, until int64, seq uint64) (string, int64, error)
}

func (c *sequenceCheck) visit(r *kgo.Record) error {
	if string(r.Key) != c.streamID {
		return nil
	}
	e, err := decodeRecord(r, c.streamID)
	if err != nil {
		return err
	}
	if c.top == 0 {
		c.first = r.Offset
	}
	if e.Sequence <= c.top {
		// A repeat: the same event again, or a fork.
		id, offset := c.topID, c.topOffset
		if e.Sequence < c.top || id == "" {
			if id, offset, err = c.find(r.Partition, c.first, r.Offset, e.Sequence); err != nil {
				return err
			}
		}
		if id == e.EventID {
			return nil
		}
		return &ForkError{StreamID: c.streamID, Sequence: e.Sequence, Partition: r.Partition,
			FirstEventID: id, FirstOffset: offset, OtherEventID: e.EventID, OtherOffset: r.Offset}
	}
	if e.Sequence > c.next && e.Sequence > c.after {
		return &PlacementError{Op: "read", Anomaly: Anomaly{
			Kind: AnomalyGap, StreamID: c.streamID, Partition: r.Partition, Offset: r.Offset, ExpectedPartition: c.home,
			Sequence: e.Sequence, Previous: c.next - 1,
		}}
	}
	c.top, c.topID, c.topOffset = e.Sequence, e.EventID, r.Offset
	if e.Sequence <= c.after {
		return nil
	}
	c.next = e.Sequence + 1
	if !c.yield(e, nil) {
		return errStop
	}
	return nil
}

// findSequence returns the event ID and offset of the first record of
// streamID holding seq in [from, until) of the partition, read with a
// client of its own (the caller holds a pooled reader).
func (s *Store) findSequence(ctx context.Context, streamID string, partition int32, from, until int64, seq uint64) (string, int64, error) {
	id, offset := "", int64(-1)
	err := kafkaio.ReadPartition(ctx, s.cfg.Seeds, s.cfg.ClientOpts, s.cfg.Topic, partition, from, until, func() bool { return false }, func(r *kgo.Record) error {
		if string(r.Key) != streamID {
			return nil
		}
		e, err := DecodeRecord(r)
		if err != nil || e.Sequence != seq {
			return err
		}
		id, offset = e.EventID, r.Offset
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return "", -1, fmt.Errorf("kafkastore: find sequence %d of %s in %s/%d: %w", seq, streamID, s.cfg.Topic, partition, err)
	}
	if id == "" {
		return "", -1, fmt.Errorf("kafkastore: sequence %d of %s is not in %s/%d offsets %d-%d, though a later record repeats it", seq, streamID, s.cfg.Topic, partition, from, until-1)
	}
	return id, offset, nil
}

func (s *Store) readStream(ctx context.Context, streamID string, entry CatalogEntry, known bool, after uint64, yield func(framework.Event, error) bool) error {
	topic := s.cfg.Topic
	ends, n, err := s.endOffsets(ctx)
	if err != nil {
		return err
	}
	home := PartitionFor(streamID, n)
	check := &sequenceCheck{streamID: streamID, home: home, after: after, next: after + 1, yield: yield,
		find: func(partition int32, from, until int64, seq uint64) (string, int64, error) {
			return s.findSequence(ctx, streamID, partition, from, until, seq)
		}}
	if !known {
		spans, err := s.locate(ctx, streamID, ends, n)
		if err != nil {
			return err
		}
		if a := placementOf(streamID, spans, home); a != nil && a.Kind == AnomalySplit {
			return &PlacementError{Op: "read", Anomaly: *a}
		}
		for p, sp := range spans { // at most one: home, or off-home
			return s.scanRange(ctx, topic, p, sp.first, sp.last+1, check.visit)
		}
		return nil
	}
	if entry.Placement == AnomalySplit {
		return &PlacementError{Op: "read", Anomaly: Anomaly{
			Kind: AnomalySplit, StreamID: streamID, Partition: entry.Partition, Offset: entry.FirstOffset, ExpectedPartition: home,
		}}
	}
	partition, head := entry.Partition, entry.HeadOffset
	listed, ok := ends.Lookup(topic, partition)
	if !ok || listed.Err != nil {
		return fmt.Errorf("kafkastore: end offset of %s/%d: %v", topic, partition, listed.Err)
	}
	end := listed.Offset
	if end <= head {
		// A transaction commits before its markers reach the partition:
		// the head an append just committed becomes readable a moment
		// later.
		if end, err = s.waitStable(ctx, partition, head); err != nil {
			return err
		}
	}

	// Records beyond the head are read from verifyFrom on; every key
	// found there is remembered, so the next call starts where this one
	// ended unless the stream has records in between.
	verifyFrom := s.scanned.readFrom(partition, streamID, head)
	var keys map[string]*keySpan
	if verifyFrom < end {
		keys = map[string]*keySpan{}
	}
	visit := func(r *kgo.Record) error {
		if keys != nil && r.Offset >= verifyFrom {
			note(keys, r.Key, r.Offset)
		}
		return check.visit(r)
	}
	throughHead := after < entry.HeadSequence
	if !throughHead && entry.HeadSequence > 0 {
		// Only what lies beyond the head is read: a record there at or
		// below the head repeats a sequence read before.
		check.top, check.topOffset, check.first = entry.HeadSequence, entry.HeadOffset, entry.FirstOffset
	}
	scannedBeyond := false
	if throughHead {
		until := min(head+1, end)
		if verifyFrom == head+1 {
			until, scannedBeyond = end, true // one pass through the head and beyond
		}
		if err := s.scanRange(ctx, topic, partition, entry.FirstOffset, until, visit); err != nil {
			return err
		}
	}
	if !scannedBeyond && verifyFrom < end {
		if err := s.scanRange(ctx, topic, partition, verifyFrom, end, visit); err != nil {
			return err
		}
	}
	if keys != nil {
		s.scanned.add(partition, verifyFrom, end, false, keys)
	}
	if throughHead && check.next-1 < entry.HeadSequence {
		return &PlacementError{Op: "read", Anomaly: Anomaly{
			Kind: AnomalyMissing, StreamID: streamID, Partition: partition, Offset: head, ExpectedPartition: home,
			Sequence: entry.HeadSequence, Previous: check.next - 1,
		}}
	}
	return nil
}

// scanPartition calls fn for each record of topic/partition from offset
// from through offset until (inclusive; -1: through the last stable offset
// as of the call), using a pooled consumer.
func (s *Store) scanPartition(ctx context.Context, topic string, partition int32, from, until int64, fn func(*kgo.Record) error) error {
	ends, err := kafkaio.ListOffsets(ctx, s.admin.ListCommittedOffsets, topic)
	if err != nil {
		return fmt.Errorf("kafkastore: end offset of %s/%d: %w", topic, partition, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok || end.Err != nil {
		return fmt.Errorf("kafkastore: end offset of %s/%d: %v", topic, partition, end.Err)
	}
	if until < 0 || until >= end.Offset {
		until = end.Offset - 1
	}
	return s.scanRange(ctx, topic, partition, from, until+1, fn)
}

// borrowReader takes a consumer from the Store's pool; the caller removes
// its partitions and puts it back.
func (s *Store) borrowReader(ctx context.Context) (*kgo.Client, error) {
	select {
	case reader := <-s.readers:
		return reader, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closed:
		return nil, ErrClosed
	}
}

// scanRange calls fn for each record of topic/partition with an offset in
// [from, end), using a pooled consumer. Transaction markers and aborted
// records are not passed to fn.
func (s *Store) scanRange(ctx context.Context, topic string, partition int32, from, end int64, fn func(*kgo.Record) error) error {
	if end <= from {
		return nil
	}
	reader, err := s.borrowReader(ctx)
	if err != nil {
		return err
	}
	reader.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}})
	defer func() {
		reader.RemoveConsumePartitions(map[string][]int32{topic: {partition}})
		s.readers <- reader
	}()
	for {
		fetches := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var fetchErr error
		fetches.EachError(func(t string, p int32, err error) {
			fetchErr = fmt.Errorf("kafkastore: read %s/%d: %w", t, p, err)
		})
		if fetchErr != nil {
			return fetchErr
		}
		done := false
		var cbErr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if done || cbErr != nil || fp.Topic != topic || fp.Partition != partition {
				return
			}
			for _, r := range fp.Records {
				if r.Offset < from {
					continue
				}
				if r.Offset >= end {
					done = true
					return
				}
				if !r.Attrs.IsControl() {
					if err := fn(r); err != nil {
						cbErr = err
						return
					}
				}
				if r.Offset == end-1 {
					done = true
					return
				}
			}
		})
		if cbErr != nil {
			return cbErr
		}
		if done {
			return nil
		}
	}
}

// rescanHead finds the true head of a cataloged stream whose last append
// failed part way, by reading its partition after the last known head.
func (s *Store) rescanHead(ctx context.Context, entry CatalogEntry) (CatalogEntry, error) {
	fixed, err := s.headIn(ctx, entry, entry.HeadOffset+1, -1)
	if err != nil {
		return CatalogEntry{}, fmt.Errorf("kafkastore: re-read the head of %s: %w", entry.StreamID, err)
	}
	return fixed, nil
}

// headIn returns entry with the highest sequence of its stream found in
// entry.Partition from offset from through until (-1: the last stable
// offset), when above entry's head, as its head; for an entry without a
// head, the first record of the stream found as its first offset.
func (s *Store) headIn(ctx context.Context, entry CatalogEntry, from, until int64) (CatalogEntry, error) {
	visit := func(r *kgo.Record) error {
		if string(r.Key) != entry.StreamID {
			return nil
		}
		e, err := DecodeRecord(r)
		if err != nil {
			return err
		}
		if e.Sequence > entry.HeadSequence {
			if entry.HeadSequence == 0 {
				entry.FirstOffset = r.Offset
			}
			entry.HeadSequence, entry.HeadOffset = e.Sequence, r.Offset
		}
		return nil
	}
	var err error
	if until < 0 {
		err = s.scanPartition(ctx, s.cfg.Topic, entry.Partition, from, until, visit)
	} else {
		err = s.scanRange(ctx, s.cfg.Topic, entry.Partition, from, until+1, visit)
	}
	return entry, err
}

// uncatalogedHead returns the head of a stream the catalog lacks: the
// highest sequence of its records on any partition (see locate), with
// the partition holding it and its offsets there, and Placement set as a
// rebuilt catalog would set it. A stream without records has head 0. With
// forAppend, a stream not wholly on its key's murmur2 partition is refused
// with a [*PlacementError] before its sequences are read.
func (s *Store) uncatalogedHead(ctx context.Context, streamID string, forAppend bool) (CatalogEntry, error) {
	ends, n, err := s.endOffsets(ctx)
	if err != nil {
		return CatalogEntry{}, err
	}
	spans, err := s.locate(ctx, streamID, ends, n)
	if err != nil {
		return CatalogEntry{}, err
	}
	head := CatalogEntry{StreamID: streamID}
	if a := placementOf(streamID, spans, PartitionFor(streamID, n)); a != nil {
		if forAppend {
			return CatalogEntry{}, &PlacementError{Op: "append", Anomaly: *a}
		}
		head.Placement = a.Kind
	}
	for _, p := range slices.Sorted(maps.Keys(spans)) {
		there, err := s.headIn(ctx, CatalogEntry{StreamID: streamID, Partition: p}, spans[p].first, spans[p].last)
		if err != nil {
			return CatalogEntry{}, fmt.Errorf("kafkastore: read the head of %s: %w", streamID, err)
		}
		if there.HeadSequence > head.HeadSequence {
			there.Placement = head.Placement
			head = there
		}
	}
	return head, nil
}

// PartitionFor returns the partition the Java clients' default partitioner
// (and this package's producer) assigns to a stream ID as the record key:
// murmur2 of the key, made positive, modulo the partition count.
func PartitionFor(streamID string, partitions int32) int32 {
	return int32((murmur2([]byte(streamID)) & 0x7fffffff) % uint32(partitions))
}

// murmur2 is Kafka's Utils.murmur2 (seed 0x9747b28c).
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// waitStable waits, up to Config.RequestTimeout, until the last stable
// offset of the event topic's partition passes offset, and returns it
// (also when it does not pass: the caller reports what is missing).
func (s *Store) waitStable(ctx context.Context, partition int32, offset int64) (int64, error) {
	topic := s.cfg.Topic
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ends, err := kafkaio.ListOffsets(ctx, s.admin.ListCommittedOffsets, topic)
		if err != nil {
			return 0, fmt.Errorf("kafkastore: end offsets of %s: %w", topic, err)
		}
		listed, ok := ends.Lookup(topic, partition)
		if !ok || listed.Err != nil {
			return 0, fmt.Errorf("kafkastore: end offset of %s/%d: %v", topic, partition, listed.Err)
		}
		if listed.Offset > offset || time.Now().After(deadline) {
			return listed.Offset, nil
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return 0, err
		}
	}
}
