package kafkastore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/internal/kafkaio"
)

// CatalogEntry is what the catalog knows of one stream.
type CatalogEntry struct {
	StreamID     string `json:"-"`
	Partition    int32  `json:"partition"`
	FirstOffset  int64  `json:"first_offset"`
	HeadSequence uint64 `json:"head_sequence"`
	HeadOffset   int64  `json:"head_offset"`
	// Placement is empty for a stream on the murmur2 partition of its
	// key. [Store.RebuildCatalog] sets it to [AnomalyOffHome] for a stream
	// wholly on another partition (Partition; ReadStream reads it there,
	// Append refuses it) and to [AnomalySplit] for a stream on several
	// partitions (Partition is the one holding its lowest sequence, the
	// offsets are those on Partition, HeadSequence is the highest sequence
	// on any partition; ReadStream and Append refuse it).
	Placement AnomalyKind `json:"placement,omitempty"`
}

// catalogRecord encodes e for the catalog topic.
func (s *Store) catalogRecord(ctx context.Context, e CatalogEntry) *kgo.Record {
	value, _ := json.Marshal(e) // plain struct: cannot fail
	return &kgo.Record{Topic: s.cfg.CatalogTopic, Key: []byte(e.StreamID), Value: value, Context: ctx}
}

// applyCatalog records e in memory unless what is there is newer.
// s.mu must be held.
func (s *Store) applyCatalogLocked(e CatalogEntry) {
	if old, ok := s.streams[e.StreamID]; ok && old.Partition == e.Partition {
		// A stream's first record never moves: a later entry with
		// another first offset comes from a second writer that took the
		// stream for new (a fork). The earliest is kept, so that reads
		// start early enough to see both events.
		first := min(old.FirstOffset, e.FirstOffset)
		if old.HeadOffset > e.HeadOffset {
			e = old
		}
		e.FirstOffset = first
	}
	s.streams[e.StreamID] = e
}

// refreshCatalog reads the catalog topic up to its current end, at most
// once per maxAge (0: always).
func (s *Store) refreshCatalog(ctx context.Context, maxAge time.Duration) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if maxAge > 0 && time.Since(s.refreshedAt) < maxAge {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	ends, err := kafkaio.ListOffsets(ctx, s.admin.ListCommittedOffsets, s.cfg.CatalogTopic)
	if err != nil {
		return fmt.Errorf("kafkastore: end offsets of catalog %s: %w", s.cfg.CatalogTopic, err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("kafkastore: end offsets of catalog %s: %w", s.cfg.CatalogTopic, err)
	}
	behind := func() bool {
		for _, o := range ends[s.cfg.CatalogTopic] {
			if s.catalogNext[o.Partition] < o.Offset {
				return true
			}
		}
		return false
	}
	started := time.Now()
	for behind() {
		fetches := s.catalogReader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kafkastore: read catalog %s: %w", s.cfg.CatalogTopic, err)
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			fetchErr = fmt.Errorf("kafkastore: read catalog %s partition %d: %w", topic, p, err)
		})
		if fetchErr != nil {
			return fetchErr
		}
		s.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			s.catalogNext[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			var e CatalogEntry
			if err := json.Unmarshal(r.Value, &e); err != nil || len(r.Key) == 0 {
				s.cfg.Logger.Warn("ignoring malformed catalog record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			e.StreamID = string(r.Key)
			s.applyCatalogLocked(e)
		})
		s.mu.Unlock()
	}
	s.refreshedAt = started
	return nil
}

// RebuildReport says what [Store.RebuildCatalog] found.
type RebuildReport struct {
	Streams int   // streams written to the catalog
	Records int64 // records scanned
	// Malformed lists records that do not follow the header contract (at
	// most 100; MalformedCount counts all). They are not in the catalog.
	Malformed      []*RecordError
	MalformedCount int
	// Misplaced counts the streams not wholly on the murmur2 partition of
	// their key: split over partitions, or on another one.
	Misplaced int
	// Anomalies lists, ordered by stream ID, a split or off-home anomaly
	// for every partition other than its key's murmur2 partition that
	// holds records of a stream, and for a stream on one partition the
	// first gap or duplicate in its sequences (a split stream's sequences
	// are not checked: the split explains their gaps). At most
	// maxReportedAnomalies are listed; AnomalyCount counts all.
	Anomalies    []Anomaly
	AnomalyCount int
}

// maxReportedAnomalies bounds RebuildReport.Anomalies.
const maxReportedAnomalies = 10_000

// seenOnPartition is what a rebuild saw of one stream on one partition.
type seenOnPartition struct {
	partition          int32
	firstOffset        int64
	headOffset         int64
	headSequence       uint64
	lowestSequence     uint64
	records            int64
	firstSequenceIssue *Anomaly
}

// RebuildCatalog scans the whole event topic and writes a catalog entry for
// every stream found, replacing what the catalog held for those streams.
// Use it for event topics written by other producers that follow the header
// contract, or after the catalog topic was lost. Records that do not decode
// are reported, never guessed at.
//
// It reports streams whose records are not all on the murmur2 partition of
// their key (written by a producer with another partitioner) as split or
// off-home anomalies, logs them, and marks their catalog entries (see
// [CatalogEntry.Placement]) so that Append refuses them and ReadStream
// refuses a split one.
func (s *Store) RebuildCatalog(ctx context.Context) (RebuildReport, error) {
	var rep RebuildReport
	details, err := s.admin.ListTopics(ctx, s.cfg.Topic)
	if err != nil {
		return rep, fmt.Errorf("kafkastore: describe %s: %w", s.cfg.Topic, err)
	}
	starts, err := kafkaio.ListOffsets(ctx, s.admin.ListStartOffsets, s.cfg.Topic)
	if err != nil {
		return rep, fmt.Errorf("kafkastore: start offsets of %s: %w", s.cfg.Topic, err)
	}
	numbers := details[s.cfg.Topic].Partitions.Numbers()
	slices.Sort(numbers)
	n := int32(len(numbers))
	if n == 0 {
		return rep, fmt.Errorf("kafkastore: topic %s has no partitions", s.cfg.Topic)
	}
	s.partitions.Store(n)
	found := map[string][]*seenOnPartition{}
	for _, p := range numbers {
		start, _ := starts.Lookup(s.cfg.Topic, p)
		err := s.scanPartition(ctx, s.cfg.Topic, p, start.Offset, -1, func(r *kgo.Record) error {
			rep.Records++
			e, err := DecodeRecord(r)
			if err != nil {
				var re *RecordError
				if errors.As(err, &re) {
					rep.MalformedCount++
					if len(rep.Malformed) < 100 {
						rep.Malformed = append(rep.Malformed, re)
					}
				}
				return nil
			}
			parts := found[e.StreamID]
			if len(parts) == 0 || parts[len(parts)-1].partition != p {
				parts = append(parts, &seenOnPartition{partition: p, firstOffset: r.Offset, lowestSequence: e.Sequence})
				found[e.StreamID] = parts
			}
			seen := parts[len(parts)-1]
			if e.Sequence != seen.headSequence+1 && seen.firstSequenceIssue == nil {
				kind := AnomalyGap
				if e.Sequence <= seen.headSequence {
					kind = AnomalyDuplicate
				}
				seen.firstSequenceIssue = &Anomaly{Kind: kind, StreamID: e.StreamID, Partition: p, Offset: r.Offset, Sequence: e.Sequence, Previous: seen.headSequence}
			}
			seen.records++
			seen.lowestSequence = min(seen.lowestSequence, e.Sequence)
			if e.Sequence > seen.headSequence {
				seen.headSequence, seen.headOffset = e.Sequence, r.Offset
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	ids := slices.Sorted(maps.Keys(found))
	entries := make([]CatalogEntry, 0, len(ids))
	report := func(a Anomaly) {
		rep.AnomalyCount++
		if len(rep.Anomalies) < maxReportedAnomalies {
			rep.Anomalies = append(rep.Anomalies, a)
			s.cfg.Logger.WarnContext(ctx, "kafkastore: stream anomaly", "topic", s.cfg.Topic, "kind", a.Kind, "stream", a.StreamID,
				"partition", a.Partition, "offset", a.Offset, "expected_partition", a.ExpectedPartition, "partitions", a.Partitions,
				"sequence", a.Sequence, "previous", a.Previous)
		}
	}
	for _, id := range ids {
		parts := found[id]
		home := PartitionFor(id, n)
		partitions := make([]int32, len(parts))
		for i, seen := range parts {
			partitions[i] = seen.partition
		}
		// The entry describes the partition holding the stream's start.
		base := slices.MinFunc(parts, func(a, b *seenOnPartition) int { return cmp.Compare(a.lowestSequence, b.lowestSequence) })
		entry := CatalogEntry{StreamID: id, Partition: base.partition, FirstOffset: base.firstOffset, HeadSequence: base.headSequence, HeadOffset: base.headOffset}
		switch {
		case len(parts) > 1:
			entry.Placement = AnomalySplit
			for _, seen := range parts {
				entry.HeadSequence = max(entry.HeadSequence, seen.headSequence)
				if seen.partition != home {
					report(Anomaly{Kind: AnomalySplit, StreamID: id, Partition: seen.partition, Offset: seen.firstOffset,
						ExpectedPartition: home, Partitions: partitions, Records: seen.records})
				}
			}
		case base.partition != home:
			entry.Placement = AnomalyOffHome
			report(Anomaly{Kind: AnomalyOffHome, StreamID: id, Partition: base.partition, Offset: base.firstOffset,
				ExpectedPartition: home, Partitions: partitions, Records: base.records})
		}
		if entry.Placement != "" {
			rep.Misplaced++
		}
		if len(parts) == 1 && base.firstSequenceIssue != nil {
			a := *base.firstSequenceIssue
			a.ExpectedPartition = home
			report(a)
		}
		entries = append(entries, entry)
	}
	records := make([]*kgo.Record, 0, len(entries))
	for _, e := range entries {
		records = append(records, s.catalogRecord(ctx, e))
	}
	if err := s.producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		return rep, fmt.Errorf("kafkastore: write rebuilt catalog %s: %w", s.cfg.CatalogTopic, err)
	}
	s.mu.Lock()
	for _, e := range entries {
		s.streams[e.StreamID] = e
		delete(s.dirty, e.StreamID)
	}
	s.mu.Unlock()
	rep.Streams = len(entries)
	return rep, nil
}
