package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
)

// ReadStream implements [framework.EventStore]. It reads one partition:
// the one the catalog records for the stream, from the stream's first
// offset, or for a stream the catalog lacks (written by another producer,
// or before its catalog entry was written) the murmur2 partition of its
// key, from its start. It reads to the partition's last stable offset
// taken when the call begins, not only to the catalog's head, so events
// appended after the catalog entry are returned too; what lies beyond the
// head is read once per Store and remembered per key, so a later call
// reads only what was added since. Other streams' records are skipped.
// Memory is bounded by Config.ReadBatchBytes, plus the remembered keys.
//
// ReadStream never ends a stream silently short: a sequence above the
// previous one plus one, a catalog head the partition does not hold, or
// a stream the catalog records as split over partitions ends the iteration
// with a [*PlacementError] (matching [ErrMisplaced]) naming the stream, the
// partition and what is wrong. A repeated sequence is yielded: the
// consumer tells a duplicate from a conflict by the event ID. A record of
// the stream that does not decode ends the iteration with a
// [*RecordError].
//
// A stream whose records are all on one partition other than its key's
// murmur2 partition is read from there once the catalog knows it
// ([Store.RebuildCatalog]); until then ReadStream looks on the murmur2
// partition and finds nothing.
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

func (s *Store) readStream(ctx context.Context, streamID string, entry CatalogEntry, known bool, after uint64, yield func(framework.Event, error) bool) error {
	topic := s.cfg.Topic
	ends, err := s.admin.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("kafkastore: end offsets of %s: %w", topic, err)
	}
	n := int32(len(ends[topic]))
	if n == 0 {
		return fmt.Errorf("kafkastore: topic %s has no partitions", topic)
	}
	s.partitions.Store(n)
	home := PartitionFor(streamID, n)
	partition, head := home, int64(-1) // head: the catalog's head offset
	if known {
		if entry.Placement == AnomalySplit {
			return &PlacementError{Op: "read", Anomaly: Anomaly{
				Kind: AnomalySplit, StreamID: streamID, Partition: entry.Partition, Offset: entry.FirstOffset, ExpectedPartition: home,
			}}
		}
		partition, head = entry.Partition, entry.HeadOffset
	}
	listed, ok := ends.Lookup(topic, partition)
	if !ok || listed.Err != nil {
		return fmt.Errorf("kafkastore: end offset of %s/%d: %v", topic, partition, listed.Err)
	}
	end := listed.Offset

	// Records beyond the head are read from verifyFrom on; every key
	// found there is remembered, so the next call starts where this one
	// ended unless the stream has records in between.
	verifyFrom := s.scanned.readFrom(partition, streamID, head)
	var keys map[string]*keySpan
	if verifyFrom < end {
		keys = map[string]*keySpan{}
	}
	next := after + 1 // the sequence the caller expects next
	visit := func(r *kgo.Record) error {
		if keys != nil && r.Offset >= verifyFrom {
			note(keys, r.Key, r.Offset)
		}
		if string(r.Key) != streamID {
			return nil
		}
		e, err := DecodeRecord(r)
		if err != nil {
			return err
		}
		if e.Sequence <= after {
			return nil
		}
		if e.Sequence > next {
			return &PlacementError{Op: "read", Anomaly: Anomaly{
				Kind: AnomalyGap, StreamID: streamID, Partition: r.Partition, Offset: r.Offset, ExpectedPartition: home,
				Sequence: e.Sequence, Previous: next - 1,
			}}
		}
		if e.Sequence == next {
			next++
		}
		if !yield(e, nil) {
			return errStop
		}
		return nil
	}
	throughHead := known && after < entry.HeadSequence
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
		s.scanned.add(partition, verifyFrom, end, keys)
	}
	if throughHead && next-1 < entry.HeadSequence {
		return &PlacementError{Op: "read", Anomaly: Anomaly{
			Kind: AnomalyMissing, StreamID: streamID, Partition: partition, Offset: head, ExpectedPartition: home,
			Sequence: entry.HeadSequence, Previous: next - 1,
		}}
	}
	return nil
}

// scanPartition calls fn for each record of topic/partition from offset
// from through offset until (inclusive; -1: through the last stable offset
// as of the call), using a pooled consumer.
func (s *Store) scanPartition(ctx context.Context, topic string, partition int32, from, until int64, fn func(*kgo.Record) error) error {
	ends, err := s.admin.ListCommittedOffsets(ctx, topic)
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

// scanRange calls fn for each record of topic/partition with an offset in
// [from, end), using a pooled consumer. Transaction markers and aborted
// records are not passed to fn.
func (s *Store) scanRange(ctx context.Context, topic string, partition int32, from, end int64, fn func(*kgo.Record) error) error {
	if end <= from {
		return nil
	}
	var reader *kgo.Client
	select {
	case reader = <-s.readers:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return ErrClosed
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

// rescanHead finds the true head of a stream whose last append failed
// part way, by reading its partition after the last known head.
func (s *Store) rescanHead(ctx context.Context, streamID string, entry CatalogEntry, known bool) (CatalogEntry, error) {
	from := int64(0)
	if known {
		from = entry.HeadOffset + 1
	} else {
		p, err := s.partitionOf(ctx, streamID)
		if err != nil {
			return CatalogEntry{}, err
		}
		entry = CatalogEntry{StreamID: streamID, Partition: p}
	}
	err := s.scanPartition(ctx, s.cfg.Topic, entry.Partition, from, -1, func(r *kgo.Record) error {
		if string(r.Key) != streamID {
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
	})
	if err != nil {
		return CatalogEntry{}, fmt.Errorf("kafkastore: re-read the head of %s: %w", streamID, err)
	}
	return entry, nil
}

// partitionOf returns the partition Kafka's default partitioner assigns to
// the stream's key.
func (s *Store) partitionOf(ctx context.Context, streamID string) (int32, error) {
	details, err := s.admin.ListTopics(ctx, s.cfg.Topic)
	if err != nil {
		return 0, err
	}
	n := len(details[s.cfg.Topic].Partitions)
	if n == 0 {
		return 0, fmt.Errorf("kafkastore: topic %s has no partitions", s.cfg.Topic)
	}
	return PartitionFor(streamID, int32(n)), nil
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
