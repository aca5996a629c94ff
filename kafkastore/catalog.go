package kafkastore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// CatalogEntry is what the catalog knows of one stream.
type CatalogEntry struct {
	StreamID     string `json:"-"`
	Partition    int32  `json:"partition"`
	FirstOffset  int64  `json:"first_offset"`
	HeadSequence uint64 `json:"head_sequence"`
	HeadOffset   int64  `json:"head_offset"`
}

// catalogRecord encodes e for the catalog topic.
func (s *Store) catalogRecord(ctx context.Context, e CatalogEntry) *kgo.Record {
	value, _ := json.Marshal(e) // plain struct: cannot fail
	return &kgo.Record{Topic: s.cfg.CatalogTopic, Key: []byte(e.StreamID), Value: value, Context: ctx}
}

// applyCatalog records e in memory unless what is there is newer.
// s.mu must be held.
func (s *Store) applyCatalogLocked(e CatalogEntry) {
	if old, ok := s.streams[e.StreamID]; ok && old.HeadOffset > e.HeadOffset && old.Partition == e.Partition {
		return
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
	ends, err := s.admin.ListEndOffsets(ctx, s.cfg.CatalogTopic)
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
	// Anomalies describes sequences that do not follow their stream's head
	// (duplicates, gaps, several writers); the head is the highest
	// sequence seen.
	Anomalies []string
}

// RebuildCatalog scans the whole event topic and writes a catalog entry for
// every stream found, replacing what the catalog held for those streams.
// Use it for event topics written by other producers that follow the header
// contract, or after the catalog topic was lost. Records that do not decode
// are reported, never guessed at.
func (s *Store) RebuildCatalog(ctx context.Context) (RebuildReport, error) {
	var rep RebuildReport
	details, err := s.admin.ListTopics(ctx, s.cfg.Topic)
	if err != nil {
		return rep, fmt.Errorf("kafkastore: describe %s: %w", s.cfg.Topic, err)
	}
	starts, err := s.admin.ListStartOffsets(ctx, s.cfg.Topic)
	if err != nil {
		return rep, fmt.Errorf("kafkastore: start offsets of %s: %w", s.cfg.Topic, err)
	}
	found := map[string]CatalogEntry{}
	for _, p := range details[s.cfg.Topic].Partitions.Numbers() {
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
			entry, ok := found[e.StreamID]
			if !ok {
				entry = CatalogEntry{StreamID: e.StreamID, Partition: p, FirstOffset: r.Offset}
			}
			if e.Sequence != entry.HeadSequence+1 && len(rep.Anomalies) < 100 {
				rep.Anomalies = append(rep.Anomalies, fmt.Sprintf("stream %s: sequence %d after %d at %s/%d offset %d",
					e.StreamID, e.Sequence, entry.HeadSequence, s.cfg.Topic, p, r.Offset))
			}
			if e.Sequence > entry.HeadSequence {
				entry.HeadSequence, entry.HeadOffset = e.Sequence, r.Offset
			}
			found[e.StreamID] = entry
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	records := make([]*kgo.Record, 0, len(found))
	for _, e := range found {
		records = append(records, s.catalogRecord(ctx, e))
	}
	if err := s.producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		return rep, fmt.Errorf("kafkastore: write rebuilt catalog %s: %w", s.cfg.CatalogTopic, err)
	}
	s.mu.Lock()
	for id, e := range found {
		s.streams[id] = e
		delete(s.dirty, id)
	}
	s.mu.Unlock()
	rep.Streams = len(found)
	return rep, nil
}
