package kafkastore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
)

// maxBatchAppends bounds the appends one transaction carries.
const maxBatchAppends = 256

// txWriter writes guarded appends with the Store's transactional
// producer. Appends that arrive while a transaction is in flight wait and
// share the next one (group commit): one producer has one transaction at
// a time.
type txWriter struct {
	s    *Store
	opts []kgo.Opt // the producer's options, with the transactional ID

	mu      sync.Mutex
	queue   []*pendingAppend
	running bool
	closed  bool
	idle    sync.WaitGroup // done when the running goroutine ends
	cl      *kgo.Client    // owned by the running goroutine
	stale   bool           // another writer's repair fenced cl
}

// pendingAppend is one append waiting for its transaction.
type pendingAppend struct {
	ctx         context.Context
	res         appendguard.Reservation
	events      []framework.Event
	records     []*kgo.Record
	firstOffset int64 // the stream's first offset; -1: its first record
	home        int32
	retried     bool

	// Set by the transaction.
	sent        []*kgo.Record
	first, last int64
	err         error
	done        chan struct{}
}

func (pa *pendingAppend) finish(err error) {
	pa.err = err
	close(pa.done)
}

func (w *txWriter) submit(pa *pendingAppend) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.s.release(pa.res)
		return ErrClosed
	}
	w.queue = append(w.queue, pa)
	if !w.running {
		w.running = true
		w.idle.Add(1)
		go w.run()
	}
	return nil
}

// fencedOutside tells the writer that its producer was fenced by a
// repair in this process: the next transaction starts with a new one.
func (w *txWriter) fencedOutside() {
	w.mu.Lock()
	w.stale = true
	w.mu.Unlock()
}

// close fails the queued appends and waits for the transaction in flight
// to end (its appends' outcome is known then), before the Store closes the
// clients it uses.
func (w *txWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.idle.Wait()
	w.mu.Lock()
	cl := w.cl
	w.cl = nil
	w.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
}

func (w *txWriter) run() {
	for {
		w.mu.Lock()
		if w.closed {
			for _, pa := range w.queue {
				w.s.release(pa.res)
				pa.finish(fmt.Errorf("%w: %w", ErrNotWritten, ErrClosed))
			}
			w.queue = nil
		}
		if len(w.queue) == 0 {
			w.running = false
			w.mu.Unlock()
			w.idle.Done()
			return
		}
		n := min(len(w.queue), maxBatchAppends)
		batch := slices.Clone(w.queue[:n])
		w.queue = w.queue[n:]
		stale := w.stale
		w.stale = false
		w.mu.Unlock()
		if stale {
			w.reset()
		}
		w.commit(batch)
	}
}

// client returns the transactional producer, creating it when needed.
func (w *txWriter) client() (*kgo.Client, error) {
	if w.cl != nil {
		return w.cl, nil
	}
	cl, err := kgo.NewClient(w.opts...)
	if err != nil {
		return nil, fmt.Errorf("kafkastore: transactional producer: %w", err)
	}
	w.mu.Lock()
	w.cl = cl
	w.mu.Unlock()
	return cl, nil
}

// reset drops the producer; the next transaction starts a new one, whose
// first request fences the old one's epoch and aborts what it left open.
func (w *txWriter) reset() {
	w.mu.Lock()
	cl := w.cl
	w.cl = nil
	w.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
}

// commit writes one batch of appends in one transaction.
func (w *txWriter) commit(batch []*pendingAppend) {
	s := w.s
	// Appends whose caller gave up before their transaction began are
	// not written.
	batch = slices.DeleteFunc(batch, func(pa *pendingAppend) bool {
		if err := pa.ctx.Err(); err != nil {
			s.release(pa.res)
			pa.finish(fmt.Errorf("%w: %w", ErrNotWritten, err))
			return true
		}
		return false
	})
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AppendLease)
	defer cancel()
	abandon := func(err error) {
		for _, pa := range batch {
			s.release(pa.res)
			pa.finish(fmt.Errorf("%w: append to %s: %w", ErrNotWritten, pa.res.StreamID, err))
		}
	}
	cl, err := w.client()
	if err != nil {
		abandon(err)
		return
	}
	if err := cl.BeginTransaction(); err != nil {
		// The producer is in a fatal state (fenced): a new one takes
		// the batch, once.
		w.reset()
		for _, pa := range batch {
			if pa.retried {
				s.release(pa.res)
				pa.finish(fmt.Errorf("%w: append to %s: begin transaction: %w", ErrNotWritten, pa.res.StreamID, err))
				continue
			}
			pa.retried = true
			w.requeue(pa)
		}
		return
	}

	// The events, then, with their offsets known, the catalog entries.
	var records []*kgo.Record
	owner := map[*kgo.Record]*pendingAppend{}
	for _, pa := range batch {
		pa.sent = make([]*kgo.Record, len(pa.records))
		for i, r := range pa.records {
			c := *r
			pa.sent[i] = &c
			owner[&c] = pa
		}
		records = append(records, pa.sent...)
	}
	bad := map[*pendingAppend]error{}
	for _, r := range cl.ProduceSync(ctx, records...) {
		if r.Err != nil {
			bad[owner[r.Record]] = fmt.Errorf("produce: %w", r.Err)
		}
	}
	var catalog []*kgo.Record
	for _, pa := range batch {
		if bad[pa] != nil {
			continue
		}
		p0 := pa.sent[0].Partition
		pa.first, pa.last = pa.sent[0].Offset, pa.sent[len(pa.sent)-1].Offset
		if p0 != pa.home {
			bad[pa] = &PlacementError{Op: "append", Anomaly: Anomaly{
				Kind: AnomalySplit, StreamID: pa.res.StreamID, Partition: pa.home, ExpectedPartition: p0,
				Partitions: []int32{min(p0, pa.home), max(p0, pa.home)},
			}}
			continue
		}
		catalog = append(catalog, s.catalogRecord(pa.ctx, pa.entry()))
	}
	if len(bad) == 0 {
		hook("produced", batch[0].res.StreamID)
		// The catalog entries and, so that a repair knows where to look,
		// the offsets in the registry: both before the commit.
		var mu sync.Mutex
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := cl.ProduceSync(ctx, catalog...).FirstErr(); err != nil {
				mu.Lock()
				for _, pa := range batch {
					bad[pa] = fmt.Errorf("write the catalog entry: %w", err)
				}
				mu.Unlock()
			}
		})
		for _, pa := range batch {
			wg.Go(func() {
				if err := s.cfg.Guard.Record(ctx, pa.res, pa.sent[0].Partition, pa.first, pa.last); err != nil {
					if errors.Is(err, appendguard.ErrLeaseLost) {
						err = fmt.Errorf("the append took longer than its lease (Config.AppendLease %v) and may have been repaired by another writer: %w", s.cfg.AppendLease, err)
					}
					mu.Lock()
					bad[pa] = fmt.Errorf("record its offsets: %w", err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if len(bad) > 0 {
		w.abort(ctx, cl)
		for pa, err := range bad {
			if fenced(err) {
				// Another writer's repair fenced the producer (after an
				// earlier append of this one outlived its lease): not
				// these appends' fault; a new producer writes them.
				w.reset()
				delete(bad, pa)
			}
		}
		for _, pa := range batch {
			switch {
			case bad[pa] != nil:
				s.release(pa.res)
				var pe *PlacementError
				if errors.As(bad[pa], &pe) {
					pa.finish(pe)
				} else {
					pa.finish(fmt.Errorf("%w: append to %s: %w", ErrNotWritten, pa.res.StreamID, bad[pa]))
				}
			case !pa.retried:
				pa.retried = true
				w.requeue(pa)
			default:
				s.release(pa.res)
				pa.finish(fmt.Errorf("%w: append to %s: its transaction was aborted twice for other appends' failures", ErrNotWritten, pa.res.StreamID))
			}
		}
		return
	}
	hook("recorded", batch[0].res.StreamID)

	err = cl.EndTransaction(ctx, kgo.TryCommit)
	switch {
	case err == nil:
		hook("committed", batch[0].res.StreamID)
		// Fresh deadlines: the batch's may be nearly spent.
		actx, acancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		w.awaitStable(actx, append(records, catalog...))
		acancel()
		// The head moves after the records are readable: a writer of
		// the stream in another process then finds them (and the
		// catalog entry) when it reserves the next sequences.
		var wg sync.WaitGroup
		for _, pa := range batch {
			wg.Go(func() {
				cctx, ccancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
				defer ccancel()
				s.committed(cctx, pa)
			})
		}
		wg.Wait()
		hook("registered", batch[0].res.StreamID)
		for _, pa := range batch {
			pa.finish(nil)
		}
	default:
		// Not confirmed. Even "fenced" does not say the commit failed:
		// a commit the coordinator accepted before a repair fenced the
		// producer completes, and a retried EndTxn is then refused as
		// fenced. Find out by reading.
		w.reset()
		w.resolveUnconfirmed(batch, err)
	}
}

// entry returns the stream's catalog entry after pa's records.
func (pa *pendingAppend) entry() CatalogEntry {
	e := CatalogEntry{
		StreamID: pa.res.StreamID, Partition: pa.sent[0].Partition, FirstOffset: pa.firstOffset,
		HeadSequence: pa.res.Last(), HeadOffset: pa.last,
	}
	if e.FirstOffset < 0 {
		e.FirstOffset = pa.first
	}
	return e
}

// committed finishes a committed append: the registry's head, the
// catalog in memory, the events' positions.
func (s *Store) committed(ctx context.Context, pa *pendingAppend) {
	if err := s.cfg.Guard.Commit(ctx, pa.res, pa.last); err != nil {
		// The events are committed; the registry still holds the
		// reservation, which the next append repairs (finding them).
		s.cfg.Logger.Error("kafkastore: the events are committed, but the registry did not record it; the next append to the stream repairs it",
			"stream", pa.res.StreamID, "first", pa.res.First, "last", pa.res.Last(), "err", err)
	}
	contiguous := true
	for i, r := range pa.sent {
		pa.events[i].Position = &framework.Position{Partition: r.Partition, Offset: r.Offset}
		contiguous = contiguous && r.Offset == pa.first+int64(i)
	}
	s.scanned.appended(pa.sent[0].Partition, pa.res.StreamID, pa.first, pa.last, contiguous)
	s.mu.Lock()
	s.applyCatalogLocked(pa.entry())
	s.mu.Unlock()
}

func (w *txWriter) requeue(pa *pendingAppend) {
	w.mu.Lock()
	w.queue = append(w.queue, pa)
	w.mu.Unlock()
}

// abort ends the transaction without committing. When the abort is not
// confirmed, the producer is fenced so that the transaction does not stay
// open until it times out (read-committed consumers wait for it).
func (w *txWriter) abort(ctx context.Context, cl *kgo.Client) {
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		w.reset()
		if err := w.s.fence(ctx, w.s.cfg.WriterID); err != nil {
			w.s.cfg.Logger.Warn("kafkastore: could not abort an append transaction; Kafka aborts it after Config.AppendLease", "err", err)
		}
	}
}

// resolveUnconfirmed finds out whether the batch's transaction committed
// after the broker did not confirm it: fencing the producer ends the
// transaction, and the records' offsets say the rest.
func (w *txWriter) resolveUnconfirmed(batch []*pendingAppend, cause error) {
	s := w.s
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.AppendLease+s.cfg.RequestTimeout)
	defer cancel()
	uncertain := func(pa *pendingAppend, err error) {
		pa.finish(fmt.Errorf("%w: append to %s (sequences %d-%d, event IDs %s…): the commit was not confirmed (%v) and its outcome could not be read: %w",
			ErrAppendUncertain, pa.res.StreamID, pa.res.First, pa.res.Last(), pa.events[0].EventID, cause, err))
	}
	if err := s.fence(ctx, s.cfg.WriterID); err != nil {
		for _, pa := range batch {
			uncertain(pa, err)
		}
		return
	}
	for _, pa := range batch {
		res := pa.res
		res.Partition, res.FirstOffset, res.LastOffset = pa.sent[0].Partition, pa.first, pa.last
		written, err := s.committedIn(ctx, res)
		switch {
		case err != nil:
			uncertain(pa, err)
		case written:
			s.committed(ctx, pa)
			pa.finish(nil)
		default:
			s.release(pa.res)
			pa.finish(fmt.Errorf("%w: append to %s: the commit was not confirmed and did not happen: %w", ErrNotWritten, pa.res.StreamID, cause))
		}
	}
}

// fenced reports whether err says another instance of the producer's
// transactional ID took over: the transaction is aborted.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.InvalidProducerIDMapping) || errors.Is(err, kerr.TransactionAbortable)
}

// awaitStable waits until the last stable offsets of the partitions the
// committed records are on pass them: a commit returns before Kafka wrote
// its markers, and until then read-committed readers (ReadStream,
// ListStreams of any Store, the runner) do not see the records. Waiting
// makes an append visible to every reader once it returns.
func (w *txWriter) awaitStable(ctx context.Context, records []*kgo.Record) {
	s := w.s
	need := map[string]map[int32]int64{}
	for _, r := range records {
		if need[r.Topic] == nil {
			need[r.Topic] = map[int32]int64{}
		}
		need[r.Topic][r.Partition] = max(need[r.Topic][r.Partition], r.Offset)
	}
	topics := slices.Collect(maps.Keys(need))
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		ends, err := s.admin.ListCommittedOffsets(ctx, topics...)
		stable := err == nil
		if stable {
			for topic, parts := range need {
				for p, last := range parts {
					o, ok := ends.Lookup(topic, p)
					stable = stable && ok && o.Err == nil && o.Offset > last
				}
			}
		}
		if stable {
			return
		}
		if sleepCtx(ctx, delay) != nil {
			s.cfg.Logger.Warn("kafkastore: an append committed, but its records did not become readable within the append lease", "err", err)
			return
		}
	}
}
