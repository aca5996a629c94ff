package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
)

var _ framework.MultiStreamReader = (*Store)(nil)

// ReadStreams implements [framework.MultiStreamReader]: it reads every
// partition holding a listed stream once, from the lowest offset one of
// its streams needs to the partition's last stable offset taken when the
// call begins, all partitions through one pooled consumer, and yields each
// listed stream's events as [Store.ReadStream] would, the streams of a
// partition in the order of their records, the partitions interleaved.
// Records of streams not listed are passed over.
//
// Where a stream starts is what ReadStream would read it from: the
// catalog's first offset, or past the catalog's head when the cursor is
// at or beyond it; a stream the catalog lacks is first found on every
// partition as ReadStream finds it (see docs/kafkastore.md for the cost of
// that first search). Each stream is checked as ReadStream checks it, and
// what ends a ReadStream ends that stream only, yielded as a
// [*framework.StreamError] carrying the same error: a gap or a catalog
// head the partition does not hold ([*PlacementError]), a fork
// ([*ForkError]), a record that does not decode ([*RecordError]), a split
// stream (no event of it is yielded), and an error fetching its partition
// (every stream of that partition not yet finished gets it; the other
// partitions go on).
//
// Memory is bounded by Config.ReadBatchBytes (one fetch) plus about 200
// bytes per listed stream; nothing of a partition is held beyond the fetch
// being yielded.
func (s *Store) ReadStreams(ctx context.Context, streams []framework.StreamCursor) iter.Seq2[framework.Event, error] {
	return func(yield func(framework.Event, error) bool) {
		if s.isClosed() {
			yield(framework.Event{}, ErrClosed)
			return
		}
		err := s.readStreams(ctx, streams, yield)
		if err != nil && !errors.Is(err, errStop) {
			yield(framework.Event{}, err)
		}
	}
}

// streamRead is one listed stream of a ReadStreams pass.
type streamRead struct {
	check       *sequenceCheck
	from, until int64 // the stream's records in [from, until) are read
	// missingHead, when set, is the catalog head the stream must reach:
	// a pass that ends below it is an [AnomalyMissing].
	missingHead uint64
	headOffset  int64
	done        bool
}

// partitionRead is one partition of a ReadStreams pass.
type partitionRead struct {
	from, end int64 // [from, end) is read
	streams   map[string]*streamRead
	done      bool
}

func (s *Store) readStreams(ctx context.Context, streams []framework.StreamCursor, yield func(framework.Event, error) bool) error {
	topic := s.cfg.Topic
	streamFailed := func(id string, err error) error {
		if !yield(framework.Event{}, &framework.StreamError{StreamID: id, Err: err}) {
			return errStop
		}
		return nil
	}
	for _, c := range streams {
		if err := framework.ValidateStreamID(c.StreamID); err != nil {
			if err := streamFailed(c.StreamID, err); err != nil {
				return err
			}
		}
	}
	if err := s.refreshCatalog(ctx, catalogMaxAge); err != nil {
		return err
	}
	ends, n, err := s.endOffsets(ctx)
	if err != nil {
		return err
	}
	entries := make([]CatalogEntry, len(streams))
	known := make([]bool, len(streams))
	s.mu.Lock()
	for i, c := range streams {
		entries[i], known[i] = s.streams[c.StreamID]
	}
	s.mu.Unlock()

	parts := map[int32]*partitionRead{}
	partition := func(p int32) (*partitionRead, error) {
		if pr := parts[p]; pr != nil {
			return pr, nil
		}
		listed, ok := ends.Lookup(topic, p)
		if !ok || listed.Err != nil {
			return nil, fmt.Errorf("kafkastore: end offset of %s/%d: %v", topic, p, listed.Err)
		}
		pr := &partitionRead{from: listed.Offset, end: listed.Offset, streams: map[string]*streamRead{}}
		parts[p] = pr
		return pr, nil
	}
	heads := map[int32]int64{} // the highest catalog head offset per partition
	for i, c := range streams {
		id := c.StreamID
		if framework.ValidateStreamID(id) != nil {
			continue
		}
		home := PartitionFor(id, n)
		check := &sequenceCheck{streamID: id, home: home, after: c.After, next: c.After + 1, yield: yield,
			find: func(partition int32, from, until int64, seq uint64) (string, int64, error) {
				return s.findSequence(ctx, id, partition, from, until, seq)
			}}
		st := &streamRead{check: check}
		var p int32
		if !known[i] {
			spans, err := s.locate(ctx, id, ends, n)
			if err != nil {
				if errors.Is(err, ErrClosed) || ctx.Err() != nil {
					return err
				}
				if err := streamFailed(id, err); err != nil {
					return err
				}
				continue
			}
			if a := placementOf(id, spans, home); a != nil && a.Kind == AnomalySplit {
				if err := streamFailed(id, &PlacementError{Op: "read", Anomaly: *a}); err != nil {
					return err
				}
				continue
			}
			if len(spans) == 0 {
				continue // no records: nothing to yield
			}
			for sp, span := range spans { // one: home, or off-home
				p, st.from, st.until = sp, span.first, span.last+1
			}
		} else {
			entry := entries[i]
			if entry.Placement == AnomalySplit {
				err := &PlacementError{Op: "read", Anomaly: Anomaly{
					Kind: AnomalySplit, StreamID: id, Partition: entry.Partition, Offset: entry.FirstOffset, ExpectedPartition: home,
				}}
				if err := streamFailed(id, err); err != nil {
					return err
				}
				continue
			}
			p = entry.Partition
			if c.After < entry.HeadSequence {
				st.from = entry.FirstOffset
				st.missingHead, st.headOffset = entry.HeadSequence, entry.HeadOffset
			} else {
				if entry.HeadSequence > 0 {
					// Only what lies beyond the head is read: a record
					// there at or below the head repeats a sequence.
					check.top, check.topOffset, check.first = entry.HeadSequence, entry.HeadOffset, entry.FirstOffset
				}
				st.from = s.scanned.readFrom(p, id, entry.HeadOffset)
			}
			st.until = -1 // the partition's end
			if h, ok := heads[p]; !ok || entry.HeadOffset > h {
				heads[p] = entry.HeadOffset
			}
		}
		pr, err := partition(p)
		if err != nil {
			if err := streamFailed(id, err); err != nil {
				return err
			}
			continue
		}
		pr.streams[id] = st
	}
	for p, head := range heads {
		pr := parts[p]
		if pr == nil || pr.end > head {
			continue
		}
		// A transaction commits before its markers reach the partition:
		// the head an append just committed becomes readable a moment
		// later.
		end, err := s.waitStable(ctx, p, head)
		if err != nil {
			return err
		}
		pr.end = end
	}
	for _, pr := range parts {
		for _, st := range pr.streams {
			if st.until < 0 || st.until > pr.end {
				st.until = pr.end
			}
			pr.from = min(pr.from, st.from)
		}
	}
	return s.readPartitions(ctx, parts, streamFailed)
}

// readPartitions reads every partition of parts once and feeds the
// records to their streams' checks.
func (s *Store) readPartitions(ctx context.Context, parts map[int32]*partitionRead, streamFailed func(string, error) error) error {
	topic := s.cfg.Topic
	// finish ends a partition: a stream that did not reach the catalog's
	// head is missing records.
	finish := func(p int32, pr *partitionRead) error {
		pr.done = true
		for _, id := range slices.Sorted(maps.Keys(pr.streams)) {
			st := pr.streams[id]
			if st.done || st.missingHead == 0 || st.check.next-1 >= st.missingHead {
				continue
			}
			st.done = true
			err := &PlacementError{Op: "read", Anomaly: Anomaly{
				Kind: AnomalyMissing, StreamID: id, Partition: p, Offset: st.headOffset, ExpectedPartition: st.check.home,
				Sequence: st.missingHead, Previous: st.check.next - 1,
			}}
			if err := streamFailed(id, err); err != nil {
				return err
			}
		}
		return nil
	}
	// fail ends every open stream of a partition that could not be read.
	fail := func(pr *partitionRead, err error) error {
		pr.done = true
		for _, id := range slices.Sorted(maps.Keys(pr.streams)) {
			if st := pr.streams[id]; !st.done {
				st.done = true
				if err := streamFailed(id, err); err != nil {
					return err
				}
			}
		}
		return nil
	}
	consume := map[int32]kgo.Offset{}
	for _, p := range slices.Sorted(maps.Keys(parts)) {
		pr := parts[p]
		if pr.from >= pr.end {
			if err := finish(p, pr); err != nil {
				return err
			}
			continue
		}
		consume[p] = kgo.NewOffset().At(pr.from)
	}
	if len(consume) == 0 {
		return nil
	}

	reader, err := s.borrowReader(ctx)
	if err != nil {
		return err
	}
	reader.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume})
	defer func() {
		reader.RemoveConsumePartitions(map[string][]int32{topic: slices.Collect(maps.Keys(consume))})
		s.readers <- reader
	}()
	open := len(consume)
	for open > 0 {
		fetches := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var stop error
		var ended []int32
		fetches.EachError(func(t string, p int32, err error) {
			if stop != nil {
				return
			}
			err = fmt.Errorf("kafkastore: read %s/%d: %w", t, p, err)
			pr := parts[p]
			switch {
			case t != topic || pr == nil:
				stop = err // not one partition's: the client's
			case !pr.done:
				stop = fail(pr, err)
				ended = append(ended, p)
			}
		})
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			pr := parts[fp.Partition]
			if stop != nil || fp.Topic != topic || pr == nil || pr.done {
				return
			}
			var last *streamRead // of the previous record: a stream's records come in runs
			for _, r := range fp.Records {
				if r.Offset < pr.from {
					continue
				}
				if r.Offset >= pr.end {
					break
				}
				st := last
				if st == nil || string(r.Key) != st.check.streamID {
					st = pr.streams[string(r.Key)]
					last = st
				}
				if st != nil && !st.done && !r.Attrs.IsControl() && r.Offset >= st.from && r.Offset < st.until {
					if err := st.check.visit(r); err != nil {
						if errors.Is(err, errStop) {
							stop = err
							return
						}
						st.done = true
						if stop = streamFailed(st.check.streamID, err); stop != nil {
							return
						}
					}
				}
				if r.Offset == pr.end-1 {
					break
				}
			}
			if n := len(fp.Records); n > 0 && fp.Records[n-1].Offset >= pr.end-1 {
				if stop = finish(fp.Partition, pr); stop == nil {
					ended = append(ended, fp.Partition)
				}
			}
		})
		if stop != nil {
			return stop
		}
		if len(ended) > 0 {
			open -= len(ended)
			reader.RemoveConsumePartitions(map[string][]int32{topic: ended})
		}
	}
	return nil
}
