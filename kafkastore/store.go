package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/framework"
)

// Store is a [framework.EventStore] on a Kafka topic. It is safe for
// concurrent use. Close it when done.
type Store struct {
	cfg           Config
	partitionsSet bool

	producer      *kgo.Client
	writer        *txWriter    // nil without Config.Guard
	tracer        trace.Tracer // nil unless Config.TracerProvider is set
	admin         *kadm.Client
	catalogReader *kgo.Client
	readers       chan *kgo.Client // pooled ReadStream consumers
	partitions    atomic.Int32     // the event topic's partition count, as last seen
	scanned       scanIndex        // where keys are, per partition: see locate and ReadStream
	locating      chan struct{}    // held by the one locate call running

	refreshMu   sync.Mutex
	refreshedAt time.Time
	catalogNext map[int32]int64 // next catalog offset to read, per partition

	mu      sync.Mutex
	streams map[string]CatalogEntry
	dirty   map[string]bool // streams whose head must be re-read before appending
	// checked holds the cataloged streams whose records beyond the
	// catalog's head this Store has looked for (once per stream: after
	// that, as the single writer, it knows their heads).
	checked map[string]bool

	locks    [256]sync.Mutex // appends, striped by stream
	lockSeed maphash.Seed

	closeOnce sync.Once
	closed    chan struct{}
}

var _ framework.EventStore = (*Store)(nil)

// catalogMaxAge is how stale the catalog may be for ReadStream and
// StreamVersion; ListStreams always reads it to the end.
const catalogMaxAge = 250 * time.Millisecond

// New connects to Kafka, creates or checks the topics, and loads the
// catalog.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	partitionsSet := cfg.Partitions != 0
	cfg.setDefaults()
	s := &Store{
		cfg: cfg, partitionsSet: partitionsSet,
		catalogNext: map[int32]int64{},
		streams:     map[string]CatalogEntry{},
		dirty:       map[string]bool{},
		checked:     map[string]bool{},
		lockSeed:    maphash.MakeSeed(),
		closed:      make(chan struct{}),
		readers:     make(chan *kgo.Client, cfg.ReadConcurrency),
		locating:    make(chan struct{}, 1),
	}
	// A short metadata age lets a freshly created topic be used at once
	// (the default waits 5s before re-asking for unknown partitions).
	base := append([]kgo.Opt{kgo.SeedBrokers(cfg.Seeds...), kgo.MetadataMinAge(250 * time.Millisecond)}, cfg.ClientOpts...)
	var err error
	producerOpts := append(slices.Clone(base),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2, as the Java clients
		kgo.ProducerLinger(0),
	)
	if cfg.TracerProvider != nil || cfg.MeterProvider != nil {
		var kopts []kotel.Opt
		if cfg.TracerProvider != nil {
			s.tracer = cfg.TracerProvider.Tracer("github.com/projector-dev/projector/kafkastore")
			kopts = append(kopts, kotel.WithTracer(kotel.NewTracer(kotel.TracerProvider(cfg.TracerProvider), kotel.TracerPropagator(cfg.Propagator))))
		}
		if cfg.MeterProvider != nil {
			kopts = append(kopts, kotel.WithMeter(kotel.NewMeter(kotel.MeterProvider(cfg.MeterProvider))))
		}
		producerOpts = append(producerOpts, kgo.WithHooks(kotel.NewKotel(kopts...).Hooks()...))
	}
	if cfg.Guard != nil {
		s.writer = &txWriter{s: s, opts: append(slices.Clone(producerOpts),
			kgo.TransactionalID(cfg.WriterID), kgo.TransactionTimeout(cfg.AppendLease))}
	}
	s.producer, err = kgo.NewClient(producerOpts...)
	if err != nil {
		return nil, fmt.Errorf("kafkastore: producer: %w", err)
	}
	s.admin = kadm.NewClient(s.producer)
	cleanup := func(err error) (*Store, error) { s.Close(); return nil, err }

	tctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	if err := s.ensureTopics(tctx); err != nil {
		return cleanup(err)
	}
	s.catalogReader, err = kgo.NewClient(append(slices.Clone(base),
		kgo.ConsumeTopics(cfg.CatalogTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Appends write catalog entries in transactions: their markers
		// occupy the last offsets, and seeing them tells the reader it
		// reached the end.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return cleanup(fmt.Errorf("kafkastore: catalog reader: %w", err))
	}
	for range cfg.ReadConcurrency {
		r, err := kgo.NewClient(append(slices.Clone(base),
			kgo.FetchMaxBytes(cfg.ReadBatchBytes),
			kgo.FetchMaxPartitionBytes(cfg.ReadBatchBytes),
			kgo.MaxConcurrentFetches(1),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// Transaction markers occupy offsets: seeing them tells a
			// scan it reached the end offset it was asked for.
			kgo.KeepControlRecords(),
		)...)
		if err != nil {
			return cleanup(fmt.Errorf("kafkastore: stream reader: %w", err))
		}
		s.readers <- r
	}
	if err := s.refreshCatalog(ctx, 0); err != nil {
		return cleanup(err)
	}
	return s, nil
}

// Close releases the clients. Calls after Close fail with [ErrClosed].
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.writer != nil {
			s.writer.close()
		}
		if s.producer != nil {
			s.producer.Close()
		}
		if s.catalogReader != nil {
			s.catalogReader.Close()
		}
		for {
			select {
			case r := <-s.readers:
				r.Close()
			default:
				return
			}
		}
	})
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// Config returns the store's configuration, with defaults applied.
func (s *Store) Config() Config { return s.cfg }

func (s *Store) streamLock(id string) *sync.Mutex {
	return &s.locks[maphash.String(s.lockSeed, id)%uint64(len(s.locks))]
}

// Append implements [framework.EventStore]. It returns when every record
// is acknowledged by all in-sync replicas; the events it returns carry
// their partition and offset. See the package documentation for the
// single-writer rule.
//
// The expected version is checked against the stream's head: the
// catalog's, or for a stream the catalog lacks the highest sequence of its
// records, found on every partition (the first such call of a Store reads
// the whole topic, later ones what was added since), so a
// stream another producer wrote is not taken for a new one. A stream whose
// records are not all on the murmur2 partition of its key (off-home or
// split, whether the catalog records it so or not) is refused with a
// [*PlacementError] naming where they are and where the events would go,
// before anything is written.
func (s *Store) Append(ctx context.Context, streamID string, expected framework.ExpectedVersion, events []framework.EventData) (_ []framework.Event, err error) {
	if err := framework.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	if s.tracer != nil {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, "append "+s.cfg.Topic, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", s.cfg.Topic),
			attribute.String("projector.stream_id", streamID),
			attribute.Int("messaging.batch.message_count", len(events)),
			attribute.String("projector.expected_version", expected.String()),
		))
		defer span.End()
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
		}()
	}
	lock := s.streamLock(streamID)
	lock.Lock()
	defer lock.Unlock()
	switch {
	case s.cfg.Guard != nil:
		return s.guardedAppend(ctx, streamID, expected, events)
	case !s.cfg.SingleWriter:
		return nil, ErrNoGuard
	}
	// A catalog rebuilt elsewhere may have found the stream written by
	// another producer, off its murmur2 partition.
	if err := s.refreshCatalog(ctx, catalogMaxAge); err != nil {
		return nil, err
	}

	head, err := s.head(ctx, streamID)
	if err != nil {
		return nil, err
	}
	// Appending to a stream off its murmur2 partition would split it: the
	// producer puts the events on the key's partition.
	if head.HeadSequence > 0 {
		if err := s.misplaced(head); err != nil {
			return nil, err
		}
	}
	if !expected.Check(head.HeadSequence) {
		return nil, &framework.VersionConflictError{StreamID: streamID, Expected: expected, Actual: head.HeadSequence}
	}
	if len(events) == 0 {
		return nil, nil
	}
	now := time.Now().UTC()
	recorded := make([]framework.Event, len(events))
	records := make([]*kgo.Record, len(events))
	for i, d := range events {
		id := d.EventID
		if id == "" {
			id = framework.NewEventID()
		}
		recorded[i] = framework.Event{
			StreamID: streamID, Sequence: head.HeadSequence + uint64(i) + 1, EventID: id, Type: d.Type,
			SchemaVersion: d.SchemaVersion, Data: d.Data, Metadata: d.Metadata, RecordedAt: now,
		}
		records[i] = s.encodeRecord(ctx, recorded[i])
	}
	results := s.producer.ProduceSync(ctx, records...)
	if err := results.FirstErr(); err != nil {
		acked := 0
		for _, r := range results {
			if r.Err == nil {
				acked++
			}
		}
		s.mu.Lock()
		s.dirty[streamID] = true // a prefix may be written: re-read the head next time
		s.mu.Unlock()
		return nil, fmt.Errorf("kafkastore: append to %s: %d of %d events acknowledged: %w", streamID, acked, len(records), err)
	}
	hook("produced", streamID)
	contiguous := true
	for i, r := range records {
		recorded[i].Position = &framework.Position{Partition: r.Partition, Offset: r.Offset}
		contiguous = contiguous && r.Partition == records[0].Partition && r.Offset == records[0].Offset+int64(i)
	}
	s.scanned.appended(records[0].Partition, streamID, records[0].Offset, records[len(records)-1].Offset, contiguous)
	entry := CatalogEntry{
		StreamID: streamID, Partition: records[0].Partition, FirstOffset: head.FirstOffset,
		HeadSequence: recorded[len(recorded)-1].Sequence, HeadOffset: records[len(records)-1].Offset,
	}
	if head.HeadSequence == 0 {
		entry.FirstOffset = records[0].Offset
	}
	if head.HeadSequence > 0 && head.Partition != entry.Partition {
		// The check above saw the stream at home with the partition count
		// known then: the count changed since.
		s.mu.Lock()
		s.dirty[streamID] = true
		s.mu.Unlock()
		return recorded, &PlacementError{Op: "append", written: true, Anomaly: Anomaly{
			Kind: AnomalySplit, StreamID: streamID, Partition: head.Partition, Offset: head.FirstOffset,
			ExpectedPartition: entry.Partition, Partitions: []int32{min(head.Partition, entry.Partition), max(head.Partition, entry.Partition)},
		}}
	}
	s.mu.Lock()
	s.applyCatalogLocked(entry)
	s.checked[streamID] = true // this Store wrote its head
	s.mu.Unlock()
	if err := s.producer.ProduceSync(ctx, s.catalogRecord(ctx, entry)).FirstErr(); err != nil {
		s.mu.Lock()
		s.dirty[streamID] = true
		s.mu.Unlock()
		return recorded, fmt.Errorf("kafkastore: append to %s: the events are stored, but the catalog update failed (the next append retries it): %w", streamID, err)
	}
	return recorded, nil
}

// head returns the stream's head for a single writer's append: its
// catalog entry, checked against the event topic at the Store's first
// append to the stream and whenever an earlier append left it uncertain
// (the catalog is written after the events: a writer that died in between
// left the catalog a step behind), or for a stream the catalog lacks what
// its records say (a [*PlacementError] when they are off the key's
// murmur2 partition).
func (s *Store) head(ctx context.Context, streamID string) (CatalogEntry, error) {
	s.mu.Lock()
	entry, known := s.streams[streamID]
	dirty := s.dirty[streamID] || known && !s.checked[streamID]
	s.mu.Unlock()
	if !known {
		head, err := s.uncatalogedHead(ctx, streamID, true)
		if err == nil && dirty {
			s.mu.Lock()
			delete(s.dirty, streamID)
			s.mu.Unlock()
		}
		return head, err
	}
	if !dirty {
		return entry, nil
	}
	fixed, err := s.headPastCatalog(ctx, entry)
	if err != nil {
		return CatalogEntry{}, err
	}
	if fixed != entry {
		if err := s.producer.ProduceSync(ctx, s.catalogRecord(ctx, fixed)).FirstErr(); err != nil {
			return CatalogEntry{}, fmt.Errorf("kafkastore: repair catalog entry of %s: %w", streamID, err)
		}
	}
	s.mu.Lock()
	s.streams[streamID] = fixed
	delete(s.dirty, streamID)
	s.checked[streamID] = true
	s.mu.Unlock()
	return fixed, nil
}

// headPastCatalog returns entry with the highest sequence of its stream
// found beyond its head offset on its partition, reading only what the
// Store's scan index cannot vouch for (see scanIndex) and adding what it
// reads to the index.
func (s *Store) headPastCatalog(ctx context.Context, entry CatalogEntry) (CatalogEntry, error) {
	topic := s.cfg.Topic
	ends, _, err := s.endOffsets(ctx)
	if err != nil {
		return CatalogEntry{}, err
	}
	listed, ok := ends.Lookup(topic, entry.Partition)
	if !ok || listed.Err != nil {
		return CatalogEntry{}, fmt.Errorf("kafkastore: end offset of %s/%d: %v", topic, entry.Partition, listed.Err)
	}
	from, end := s.scanned.readFrom(entry.Partition, entry.StreamID, entry.HeadOffset), listed.Offset
	if from >= end {
		return entry, nil
	}
	keys := map[string]*keySpan{}
	err = s.scanRange(ctx, topic, entry.Partition, from, end, func(r *kgo.Record) error {
		note(keys, r.Key, r.Offset)
		if string(r.Key) != entry.StreamID {
			return nil
		}
		e, err := DecodeRecord(r)
		if err != nil {
			return err
		}
		if e.Sequence > entry.HeadSequence {
			entry.HeadSequence, entry.HeadOffset = e.Sequence, r.Offset
		}
		return nil
	})
	if err != nil {
		return CatalogEntry{}, fmt.Errorf("kafkastore: re-read the head of %s: %w", entry.StreamID, err)
	}
	s.scanned.add(entry.Partition, from, end, false, keys)
	return entry, nil
}

// StreamVersion implements [framework.EventStore]. It is the catalog's
// head, or for a stream the catalog lacks the highest sequence of its
// records on any partition (found as Append finds it), as a rebuilt
// catalog would record it, also for a stream off its key's murmur2
// partition.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (uint64, error) {
	if err := framework.ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	if s.isClosed() {
		return 0, ErrClosed
	}
	// The stream is read through, so that a fork is reported, not hidden.
	var head uint64
	for e, err := range s.ReadStream(ctx, streamID, 0) {
		if err != nil {
			var pe *PlacementError
			if errors.As(err, &pe) && pe.Anomaly.Kind != AnomalyGap && pe.Anomaly.Kind != AnomalyMissing {
				// Off its key's partition: the highest sequence on any
				// partition, as a rebuilt catalog records it.
				h, herr := s.uncatalogedHead(ctx, streamID, false)
				return h.HeadSequence, herr
			}
			return 0, err
		}
		head = e.Sequence
	}
	return head, nil
}

// Entry returns the catalog entry of a stream, refreshed from the catalog
// topic, and whether the catalog knows the stream. It does not look at the
// event topic: a stream written by another producer exists before the
// catalog knows it (see [Store.RebuildCatalog]).
func (s *Store) Entry(ctx context.Context, streamID string) (CatalogEntry, bool, error) {
	if err := s.refreshCatalog(ctx, catalogMaxAge); err != nil {
		return CatalogEntry{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.streams[streamID]
	return e, ok, nil
}

// ListStreams implements [framework.EventStore]. It reads the catalog topic
// to its end first, so streams appended by other writers are listed.
func (s *Store) ListStreams(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := framework.ValidatePrefix(prefix); err != nil {
			yield("", err)
			return
		}
		if s.isClosed() {
			yield("", ErrClosed)
			return
		}
		if err := s.refreshCatalog(ctx, 0); err != nil {
			yield("", err)
			return
		}
		s.mu.Lock()
		var ids []string
		for id := range s.streams {
			if strings.HasPrefix(id, prefix) {
				ids = append(ids, id)
			}
		}
		s.mu.Unlock()
		slices.Sort(ids)
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				yield("", err)
				return
			}
			if !yield(id, nil) {
				return
			}
		}
	}
}

var errStop = errors.New("stop")
