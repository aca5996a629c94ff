package kafkastore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/kafkaio"
)

// AnomalyKind says what is wrong with a stream's records.
type AnomalyKind string

const (
	// AnomalySplit: the stream has records on more than one partition, as
	// a round-robin or random partitioner leaves them.
	AnomalySplit AnomalyKind = "split"
	// AnomalyOffHome: every record of the stream is on one partition, but
	// not on the murmur2 partition of its key, as a producer hashing the
	// key otherwise (Sarama's FNV-1a) leaves them.
	AnomalyOffHome AnomalyKind = "off-home"
	// AnomalyGap: a sequence above the previous one plus one (or a stream
	// that does not start at 1).
	AnomalyGap AnomalyKind = "gap"
	// AnomalyDuplicate: a sequence at or below the previous one in the
	// same partition: two writers, or a retried append.
	AnomalyDuplicate AnomalyKind = "duplicate"
	// AnomalyMissing: the catalog records a head the stream's partition
	// does not hold.
	AnomalyMissing AnomalyKind = "missing"
)

// Anomaly is one thing wrong with where a stream's records are or with
// their sequences, as [Store.RebuildCatalog] reports it and a
// [PlacementError] carries it.
type Anomaly struct {
	Kind     AnomalyKind `json:"kind"`
	StreamID string      `json:"stream_id"`
	// Partition and Offset locate the record at fault: for split and
	// off-home the stream's first record on a partition other than
	// ExpectedPartition; for gap and duplicate the record whose sequence
	// is wrong; for missing the catalog's head record.
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
	// ExpectedPartition is the murmur2 partition of the stream's key:
	// where this package's producer, the Java client and every compatible
	// producer put it, and where Append would write it.
	ExpectedPartition int32 `json:"expected_partition"`
	// Partitions lists every partition holding records of the stream,
	// ascending; only RebuildCatalog fills it.
	Partitions []int32 `json:"partitions,omitempty"`
	// Records counts the stream's records on Partition (split, off-home;
	// RebuildCatalog only).
	Records int64 `json:"records,omitempty"`
	// Sequence is the sequence found at Offset and Previous the one before
	// it (gap, duplicate). For missing, Sequence is the head the catalog
	// records and Previous the last sequence the partition holds.
	Sequence uint64 `json:"sequence,omitempty"`
	Previous uint64 `json:"previous,omitempty"`
}

// String describes the anomaly on one line. The stream ID is quoted with
// [strconv.Quote], so that no character of it can forge or hide a line.
func (a Anomaly) String() string {
	id := strconv.Quote(a.StreamID)
	switch a.Kind {
	case AnomalySplit:
		where := "several partitions"
		if len(a.Partitions) > 0 {
			where = fmt.Sprintf("partitions %v", a.Partitions)
		}
		return fmt.Sprintf("split: stream %s has records on %s, its key's murmur2 partition is %d; partition %d holds %s from offset %d",
			id, where, a.ExpectedPartition, a.Partition, a.records(), a.Offset)
	case AnomalyOffHome:
		return fmt.Sprintf("off-home: stream %s is on partition %d (%s from offset %d), its key's murmur2 partition is %d",
			id, a.Partition, a.records(), a.Offset, a.ExpectedPartition)
	case AnomalyGap:
		return fmt.Sprintf("gap: stream %s has sequence %d after %d at partition %d offset %d", id, a.Sequence, a.Previous, a.Partition, a.Offset)
	case AnomalyDuplicate:
		return fmt.Sprintf("duplicate: stream %s has sequence %d after %d at partition %d offset %d", id, a.Sequence, a.Previous, a.Partition, a.Offset)
	case AnomalyMissing:
		return fmt.Sprintf("missing: stream %s: the catalog records head sequence %d at partition %d offset %d, the partition holds it only up to sequence %d",
			id, a.Sequence, a.Partition, a.Offset, a.Previous)
	}
	return fmt.Sprintf("%s: stream %s at partition %d offset %d", a.Kind, id, a.Partition, a.Offset)
}

func (a Anomaly) records() string {
	switch a.Records {
	case 0:
		return "records"
	case 1:
		return "1 record"
	}
	return fmt.Sprintf("%d records", a.Records)
}

// misplaced returns the error Append refuses a stream with whose catalog
// entry puts it off the murmur2 partition of its key, or nil.
func (s *Store) misplaced(e CatalogEntry) *PlacementError {
	n := s.partitions.Load()
	if n <= 0 {
		return nil
	}
	home := PartitionFor(e.StreamID, n)
	kind := e.Placement
	if kind == "" && e.Partition != home {
		kind = AnomalyOffHome
	}
	if kind == "" {
		return nil
	}
	return &PlacementError{Op: "append", Anomaly: Anomaly{
		Kind: kind, StreamID: e.StreamID, Partition: e.Partition, Offset: e.FirstOffset, ExpectedPartition: home,
	}}
}

// scanIndex remembers, per partition of the event topic, ranges of offsets
// the Store has read in full and, for every key in them, the first and
// last offset of its records, so that what it answers is read once per
// Store, not once per call. Each partition has up to two ranges:
//
//   - whole, from the partition's log start: every call about a stream the
//     catalog lacks brings it up to the partition's last stable offset
//     (locate), to find the stream's records on every partition;
//   - tail, beyond it: what ReadStream read past a cataloged stream's head
//     to tell whether the stream has records there.
//
// A tail that touches or overlaps the whole range joins it. Memory is
// about 120 bytes per key and range: once a stream the catalog lacks has
// been looked up, one entry per stream of the topic, as much again as the
// catalog.
type scanIndex struct {
	mu    sync.Mutex
	whole map[int32]*scannedRange
	tail  map[int32]*scannedRange
	// crowded marks the partitions whose whole range outgrew
	// maxIndexedKeys: they have none, and locate reads them in full.
	crowded map[int32]bool
}

type scannedRange struct {
	from, to int64 // [from, to) was read in full
	keys     map[string]*keySpan
}

type keySpan struct{ first, last int64 }

// maxIndexedKeys bounds the keys of one range (about 120 bytes each).
// Beyond it a tail range is forgotten (every ReadStream of a cataloged
// stream in the partition then reads from the stream's head to the
// partition's end) and a whole range marks its partition crowded.
const maxIndexedKeys = 1 << 18

// readFrom returns the offset from which partition p must be read to see
// every record of key after offset head (-1: every record of key).
func (x *scanIndex) readFrom(p int32, key string, head int64) int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	pos := head + 1
	for range 2 { // through the whole range, then the tail
		r := x.whole[p]
		if !r.holds(pos) {
			r = x.tail[p]
		}
		if !r.holds(pos) {
			return pos
		}
		if sp, ok := r.keys[key]; ok && sp.last >= pos {
			return max(pos, sp.first)
		}
		pos = r.to
	}
	return pos
}

func (r *scannedRange) holds(offset int64) bool {
	return r != nil && r.from <= offset && offset < r.to
}

// wholeSpan returns how far the whole range of partition p reaches (ok
// false: there is none) and the span of key in it (found), or crowded when
// the partition has too many keys for one.
func (x *scanIndex) wholeSpan(p int32, key string) (to int64, sp keySpan, found, ok, crowded bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.whole[p]
	if r == nil {
		return 0, keySpan{}, false, false, x.crowded[p]
	}
	if s, found := r.keys[key]; found {
		return r.to, *s, true, true, false
	}
	return r.to, keySpan{}, false, true, false
}

// add records that [from, to) of partition p was read in full, with the
// spans of the keys found there; whole says from is the partition's log
// start. Ranges that overlap or touch merge; of two disjoint tail ranges
// the one reaching further is kept.
func (x *scanIndex) add(p int32, from, to int64, whole bool, keys map[string]*keySpan) {
	if from > to || (from == to && !whole) {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.whole == nil {
		x.whole, x.tail, x.crowded = map[int32]*scannedRange{}, map[int32]*scannedRange{}, map[int32]bool{}
	}
	if len(keys) > maxIndexedKeys {
		if whole {
			x.crowd(p)
		}
		return
	}
	if keys == nil {
		keys = map[string]*keySpan{}
	}
	r := &scannedRange{from: from, to: to, keys: keys}
	w, t := x.whole[p], x.tail[p]
	switch {
	case w != nil && r.from <= w.to && r.to >= w.from:
		w.merge(r)
	case whole:
		x.whole[p] = r
	case t != nil && r.from <= t.to && r.to >= t.from:
		t.merge(r)
	case t == nil || r.to >= t.to:
		x.tail[p] = r
	}
	if w, t := x.whole[p], x.tail[p]; w != nil && t != nil && t.from <= w.to {
		w.merge(t)
		delete(x.tail, p)
	}
	if w := x.whole[p]; w != nil && len(w.keys) > maxIndexedKeys {
		x.crowd(p)
	}
	if t := x.tail[p]; t != nil && len(t.keys) > maxIndexedKeys {
		delete(x.tail, p)
	}
}

// appended extends the range of partition p that ends where an append
// of key wrote its records, first through last, so that no scan reads
// them again; only when the records are contiguous, so that no other
// record lies between them.
func (x *scanIndex) appended(p int32, key string, first, last int64, contiguous bool) {
	if !contiguous {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range []*scannedRange{x.whole[p], x.tail[p]} {
		if r == nil || r.to != first || (len(r.keys) >= maxIndexedKeys && r.keys[key] == nil) {
			continue
		}
		if sp, ok := r.keys[key]; ok {
			sp.last = last
		} else {
			r.keys[key] = &keySpan{first: first, last: last}
		}
		r.to = last + 1
		return
	}
}

// crowd forgets the whole range of p for good. x.mu must be held.
func (x *scanIndex) crowd(p int32) {
	delete(x.whole, p)
	x.crowded[p] = true
}

// merge adds src, which overlaps or touches r, to r.
func (r *scannedRange) merge(src *scannedRange) {
	for k, sp := range src.keys {
		if old, ok := r.keys[k]; ok {
			old.first, old.last = min(old.first, sp.first), max(old.last, sp.last)
		} else {
			r.keys[k] = sp
		}
	}
	r.from, r.to = min(r.from, src.from), max(r.to, src.to)
}

// note records r's key in keys, a scan's own map, unless it is full.
func note(keys map[string]*keySpan, key []byte, offset int64) {
	if sp, ok := keys[string(key)]; ok {
		sp.last = offset
		return
	}
	if len(keys) <= maxIndexedKeys {
		keys[string(key)] = &keySpan{first: offset, last: offset}
	}
}

// locate finds the records of a stream the catalog lacks on every
// partition of the event topic below ends (the last stable offsets the
// caller listed; n partitions): the first and last offset of its records
// on each partition that holds any. It reads only what the index lacks,
// bringing the whole range of every partition up to ends, the partitions
// at once (as many as Config.ReadConcurrency); a crowded partition it
// reads in full for the stream alone. Calls take turns, so that
// concurrent first calls of a Store read the topic once.
func (s *Store) locate(ctx context.Context, streamID string, ends kadm.ListedOffsets, n int32) (map[int32]keySpan, error) {
	select {
	case s.locating <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closed:
		return nil, ErrClosed
	}
	defer func() { <-s.locating }()
	topic := s.cfg.Topic
	type work struct {
		from, end      int64
		sp             keySpan
		has            bool
		whole, crowded bool // read from the log start; not indexed
		err            error
	}
	works := make([]work, n)
	var starts kadm.ListedOffsets // listed when a partition is read from its start
	for p := range n {
		w := &works[p]
		listed, ok := ends.Lookup(topic, p)
		if !ok || listed.Err != nil {
			return nil, fmt.Errorf("kafkastore: end offset of %s/%d: %v", topic, p, listed.Err)
		}
		w.end = listed.Offset
		var indexed bool
		w.from, w.sp, w.has, indexed, w.crowded = s.scanned.wholeSpan(p, streamID)
		if indexed {
			continue
		}
		w.whole = true
		if starts == nil {
			var err error
			if starts, err = kafkaio.ListOffsets(ctx, s.admin.ListStartOffsets, topic); err != nil {
				return nil, fmt.Errorf("kafkastore: start offsets of %s: %w", topic, err)
			}
		}
		start, ok := starts.Lookup(topic, p)
		if !ok || start.Err != nil {
			return nil, fmt.Errorf("kafkastore: start offset of %s/%d: %v", topic, p, start.Err)
		}
		w.from = start.Offset
	}
	var wg sync.WaitGroup
	for p := range n {
		w := &works[p]
		if w.from >= w.end {
			if w.whole && !w.crowded {
				s.scanned.add(p, w.from, w.from, true, nil) // empty: nothing to read next time
			}
			continue
		}
		wg.Go(func() {
			var keys map[string]*keySpan
			if !w.crowded {
				keys = map[string]*keySpan{}
			}
			w.err = s.scanRange(ctx, topic, p, w.from, w.end, func(r *kgo.Record) error {
				if keys != nil {
					note(keys, r.Key, r.Offset)
				}
				if string(r.Key) == streamID {
					if !w.has {
						w.sp, w.has = keySpan{first: r.Offset}, true
					}
					w.sp.last = r.Offset
				}
				return nil
			})
			if w.err == nil && keys != nil {
				s.scanned.add(p, w.from, w.end, w.whole, keys)
			}
		})
	}
	wg.Wait()
	found := map[int32]keySpan{}
	for p, w := range works {
		if w.err != nil {
			return nil, w.err
		}
		if w.has {
			found[int32(p)] = w.sp
		}
	}
	return found, nil
}

// placementOf returns what is wrong with where a stream's records are
// (spans, by partition; home, its key's murmur2 partition): off-home when
// they are all on another partition, split when they are on several; nil
// when they are all at home or there are none. Partition and Offset name
// the lowest partition other than home and the stream's first record
// there.
func placementOf(streamID string, spans map[int32]keySpan, home int32) *Anomaly {
	partitions := slices.Sorted(maps.Keys(spans))
	for _, p := range partitions {
		if p == home {
			continue
		}
		kind := AnomalySplit
		if len(partitions) == 1 {
			kind = AnomalyOffHome
		}
		return &Anomaly{Kind: kind, StreamID: streamID, Partition: p, Offset: spans[p].first, ExpectedPartition: home, Partitions: partitions}
	}
	return nil
}
