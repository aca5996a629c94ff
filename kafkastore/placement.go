package kafkastore

import (
	"fmt"
	"strconv"
	"sync"
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

// scanIndex remembers, per partition of the event topic, one range of
// offsets the Store has read in full and, for every key in it, the first
// and last offset of its records. ReadStream asks it whether a stream has
// records beyond its catalog head instead of reading them again, so each
// record is read once per Store for that check, not once per call. Its
// memory is about that of the catalog: one entry per stream in the range.
type scanIndex struct {
	mu    sync.Mutex
	parts map[int32]*scannedRange
}

type scannedRange struct {
	from, to int64 // [from, to) was read in full
	keys     map[string]*keySpan
}

type keySpan struct{ first, last int64 }

// maxIndexedKeys bounds the keys remembered per partition (about 120
// bytes each); beyond it the partition is forgotten and every ReadStream
// of a stream in it reads from the stream's head to the partition's end.
const maxIndexedKeys = 1 << 18

// readFrom returns the offset from which partition p must be read to see
// every record of key after offset head (-1: every record of key).
func (x *scanIndex) readFrom(p int32, key string, head int64) int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.parts[p]
	if r == nil || r.from > head+1 {
		return head + 1
	}
	if sp, ok := r.keys[key]; ok && sp.last > head {
		return max(head+1, sp.first)
	}
	return max(head+1, r.to)
}

// add records that [from, to) of partition p was read in full, with the
// spans of the keys found there. Ranges that overlap or touch merge; of
// two disjoint ranges the one reaching further is kept.
func (x *scanIndex) add(p int32, from, to int64, keys map[string]*keySpan) {
	if from >= to || len(keys) > maxIndexedKeys {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.parts == nil {
		x.parts = map[int32]*scannedRange{}
	}
	r := x.parts[p]
	if r == nil || to < r.from || from > r.to {
		if r == nil || to >= r.to {
			x.parts[p] = &scannedRange{from: from, to: to, keys: keys}
		}
		return
	}
	for k, sp := range keys {
		if old, ok := r.keys[k]; ok {
			old.first, old.last = min(old.first, sp.first), max(old.last, sp.last)
		} else {
			r.keys[k] = sp
		}
	}
	r.from, r.to = min(r.from, from), max(r.to, to)
	if len(r.keys) > maxIndexedKeys {
		delete(x.parts, p)
	}
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
