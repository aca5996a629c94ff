package redischeckpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// ApplyFunc turns one event into Redis writes, recorded on w. It runs
// before anything is sent, so it cannot read Redis; writes that depend on
// stored values (a correction replacing a value in a sum) use operations
// that run inside the script, such as [Writes.Replace]. An unknown event type
// records nothing. An error stops the batch at e.
type ApplyFunc func(e framework.Event, w *Writes) error

// AtomicProjection is a projection whose read model lives in Redis, next to
// its cursors. Each batch of events becomes one Lua script that checks the
// fence the context carries, skips every event at or below its stream's
// cursor, runs the writes of the others and raises their cursors: the read
// model and the cursors never disagree, so re-delivered events (after a
// crash between applying and committing offsets, or a rebalance) count
// once.
//
// It implements [framework.Projection], [framework.BatchApplier],
// [framework.SequenceTracker] and [framework.Resetter]. Its cursors are the
// ones [Store] keeps for the same name, so the Store doubles as its
// checkpoint store.
type AtomicProjection struct {
	store *Store
	keys  keys
	rm    string // read-model key prefix
	apply ApplyFunc

	mu      sync.Mutex
	skipped int64
	// partial holds, per stream, the event the script applied in part
	// (ErrPartialWrite): the stream is refused from there on.
	partial map[string]*WriteError
}

// NewAtomicProjection returns a projection named name that applies events
// with apply. The name is part of every key: renaming the projection starts
// an empty read model.
func (s *Store) NewAtomicProjection(name string, apply ApplyFunc) (*AtomicProjection, error) {
	k, err := s.keysFor(name)
	if err != nil {
		return nil, err
	}
	if apply == nil {
		return nil, fmt.Errorf("redischeckpoint: NewAtomicProjection %s: nil ApplyFunc", name)
	}
	return &AtomicProjection{store: s, keys: k, rm: k.base + "rm:", apply: apply}, nil
}

// Name implements [framework.Projection].
func (p *AtomicProjection) Name() string { return p.keys.name }

// KeepsCursors reports that the projection's scripts write the cursor and
// head of every event they apply, with its effect: a runner whose
// checkpoint store is the projection's Store writes them no second time
// ([controlplane.CursorKeeper]).
func (p *AtomicProjection) KeepsCursors() bool { return true }

var _ controlplane.CursorKeeper = (*AtomicProjection)(nil)

// Key returns the read-model key made of parts, for writes and for queries:
// "projector:{name}:rm:part1:part2".
func (p *AtomicProjection) Key(parts ...string) string { return p.rm + strings.Join(parts, ":") }

// Client returns the Redis client, for queries of the read model.
func (p *AtomicProjection) Client() redis.UniversalClient { return p.store.client }

// Skipped returns how many events the scripts skipped as duplicates.
func (p *AtomicProjection) Skipped() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

// Apply implements [framework.Projection].
func (p *AtomicProjection) Apply(ctx context.Context, e framework.Event) error {
	_, err := p.ApplyBatch(ctx, []framework.Event{e})
	return err
}

// LastSequence implements [framework.SequenceTracker].
func (p *AtomicProjection) LastSequence(ctx context.Context, streamID string) (uint64, error) {
	c, err := p.store.Cursors(ctx, p.keys.name, []string{streamID})
	if err != nil {
		return 0, err
	}
	return c[streamID], nil
}

// Reset implements [framework.Resetter]: it drops every read-model key and
// the cursors. Keys are found with SCAN (on every master of a Cluster).
//
// Called with a [controlplane.ResetClaim] in ctx (the runner's reset for a
// replay), every batch of deletes runs in a script that first checks that
// the claim's holder still holds the claim on that epoch's reset and that
// the reset is not recorded as done: a replica frozen in its reset past its
// claim, while another replica completed the reset and the rebuild began,
// deletes nothing when it wakes. The first refused batch ends the reset
// with a [*ResetClaimLostError]. Without a claim (a direct call), Reset
// deletes unconditionally.
func (p *AtomicProjection) Reset(ctx context.Context) error {
	claim, claimedReset := controlplane.ResetClaimFrom(ctx)
	var ck claimed
	if claimedReset {
		var err error
		if ck, err = p.store.claimKeys(p.keys.name, claim, 0); err != nil {
			return err
		}
	}
	pattern := globEscape(p.rm) + "*"
	unlink := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			var err error
			if claimedReset {
				err = p.store.unlinkClaimed(ctx, c, ck, claim, batch)
			} else {
				err = c.Unlink(ctx, batch...).Err()
			}
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	if cluster, ok := p.store.client.(*redis.ClusterClient); ok {
		err = cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return unlink(ctx, c) })
	} else {
		err = unlink(ctx, p.store.client)
	}
	var lost *ResetClaimLostError
	if errors.As(err, &lost) {
		return err
	}
	if err != nil {
		return fmt.Errorf("redischeckpoint: reset read model %s*: %w", p.rm, err)
	}
	// The cursors last, with the same check: a reset refused there leaves
	// the cursors of the model that was kept.
	if err := p.store.Delete(ctx, p.keys.name); err != nil {
		return err
	}
	p.mu.Lock()
	p.partial = nil // the partial writes went with the read model
	p.mu.Unlock()
	return nil
}

// ApplyBatch implements [framework.BatchApplier]. It returns how many
// leading events are durably processed: applied, or skipped because their
// cursor was already at or past them. An event is applied whole with its
// cursor or not at all: the error for the event at the returned index is
// a [*WriteError] when its writes are invalid ([ErrInvalidWrite]) or were
// refused ([ErrWriteRefused]); nothing of it was written and applying it
// again after fixing the cause is safe. The exception is
// [ErrPartialWrite], a refusal the script's checks did not foresee after
// some of the event's writes ran: from then on the projection refuses
// that event and the later ones of its stream until the process restarts,
// so that a retry cannot add the same writes twice.
func (p *AtomicProjection) ApplyBatch(ctx context.Context, events []framework.Event) (int, error) {
	w := &Writes{prefix: p.rm}
	done := 0
	for done < len(events) {
		args, built, buildErr := p.buildArgs(w, events[done:])
		if built > 0 {
			n, err := p.run(ctx, args, events[done:done+built])
			done += n
			if err != nil {
				return done, err
			}
		}
		if buildErr != nil {
			return done, buildErr
		}
	}
	return done, nil
}

// Bounds of one script call; a larger batch is several calls, each
// applying whole events. The values bound (fields and members changed,
// see MaxWriteValues) keeps a script short: Redis runs nothing else
// meanwhile (about 100 events of the billing example, tens of
// milliseconds), and a slow in-process fake stays far from the client's
// read timeout. Values and arguments are soft bounds: the event that
// crosses one is sent.
const (
	maxEventsPerScript = 500
	maxValuesPerScript = 20_000
	maxArgsPerScript   = 200_000
)

// buildArgs records the writes of the leading events and encodes them as
// script arguments (see applyScript), up to the bounds of one script call.
// It stops at the first event whose ApplyFunc fails, whose writes are
// invalid, or whose stream a partial write stopped, returning how many
// events it encoded and that error.
func (p *AtomicProjection) buildArgs(w *Writes, events []framework.Event) ([]any, int, error) {
	body := make([]any, 0, min(len(events), maxEventsPerScript)*11)
	var streams []any
	index := map[string]string{} // stream ID -> its index in streams, as sent
	n, values := 0, 0
	var failed error
	for _, e := range events {
		if n == maxEventsPerScript || values >= maxValuesPerScript || len(body) > maxArgsPerScript {
			break
		}
		if err := p.stopped(e); err != nil {
			failed = err
			break
		}
		w.reset()
		if err := p.apply(e, w); err != nil {
			failed = err
			break
		}
		if w.err != nil {
			we := *w.err
			we.Projection, we.StreamID, we.Sequence, we.EventID = p.keys.name, e.StreamID, e.Sequence, e.EventID
			failed = &we
			break
		}
		at := ""
		if e.Position != nil {
			at = strconv.FormatInt(int64(e.Position.Partition), 10) + "/" + strconv.FormatInt(e.Position.Offset, 10)
		}
		si, ok := index[e.StreamID]
		if !ok {
			streams = append(streams, e.StreamID)
			si = strconv.Itoa(len(streams))
			index[e.StreamID] = si
		}
		values += w.size
		prev := "" // sequence 0 follows no cursor: the script skips it
		if e.Sequence > 0 {
			prev = strconv.FormatUint(e.Sequence-1, 10)
		}
		body = append(body, si, strconv.FormatUint(e.Sequence, 10), prev, e.EventID, at, strconv.Itoa(len(w.ops)))
		for _, o := range w.ops {
			body = append(body, o.name, strconv.Itoa(len(o.args)))
			for _, a := range o.args {
				body = append(body, a)
			}
		}
		n++
	}
	args := make([]any, 0, 2+len(streams)+len(body))
	args = append(args, strconv.Itoa(n), strconv.Itoa(len(streams)))
	args = append(append(args, streams...), body...)
	return args, n, failed
}

// run executes one script call over events and translates its answer
// (see applyScript).
func (p *AtomicProjection) run(ctx context.Context, args []any, events []framework.Event) (int, error) {
	streams := make([]string, len(events))
	for i, e := range events {
		streams[i] = e.StreamID
	}
	reply, err := p.store.run(ctx, p.keys, applyScript, args, streams)
	if err != nil {
		return 0, err
	}
	res, _ := reply.([]any)
	if len(res) < 5 {
		return 0, fmt.Errorf("redischeckpoint: apply script of %s: unexpected reply %v", p.keys.name, reply)
	}
	status, _ := res[0].(string)
	processed, _ := res[1].(int64)
	skipped, _ := res[3].(int64)
	p.mu.Lock()
	p.skipped += skipped
	p.mu.Unlock()
	if processed < 0 || processed > int64(len(events)) || status != "OK" && processed == int64(len(events)) {
		return 0, fmt.Errorf("redischeckpoint: apply script of %s: status %v for event %d of %d", p.keys.name, res[0], processed+1, len(events))
	}
	switch status {
	case "OK":
		return int(processed), nil
	case "GAP":
		e := events[processed]
		cursor, _ := strconv.ParseUint(fmt.Sprint(res[4]), 10, 64)
		return int(processed), &framework.GapError{StreamID: e.StreamID, Cursor: cursor, Got: e.Sequence, EventID: e.EventID}
	case "REFUSED", "PARTIAL":
		if len(res) < 10 {
			break
		}
		e := events[processed]
		index, _ := res[5].(int64)
		we := &WriteError{Kind: ErrWriteRefused, Projection: p.keys.name, StreamID: e.StreamID, Sequence: e.Sequence, EventID: e.EventID,
			Index: int(index), Op: fmt.Sprint(res[6]), Key: fmt.Sprint(res[7]), Field: fmt.Sprint(res[8]), Code: fmt.Sprint(res[9]), Reason: fmt.Sprint(res[4])}
		if status == "PARTIAL" {
			we.Kind = ErrPartialWrite
			p.stop(we)
		} else if unavailableCode(we.Code) {
			// Nothing written, and the server, not the event, refused it
			// (a replica after a failover, out of memory): retried.
			return int(processed), &UnavailableError{Projection: p.keys.name, Err: we}
		}
		return int(processed), we
	}
	return 0, fmt.Errorf("redischeckpoint: apply script of %s: unexpected reply %v", p.keys.name, reply)
}

// stop records a partly applied event: its stream is refused from it on.
func (p *AtomicProjection) stop(we *WriteError) {
	p.store.cfg.Logger.Error("redischeckpoint: an event was partly applied; its stream is stopped until the read model is repaired and the process restarts",
		"projection", we.Projection, "stream", we.StreamID, "sequence", we.Sequence, "event", we.EventID, "err", we)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.partial == nil {
		p.partial = map[string]*WriteError{}
	}
	p.partial[we.StreamID] = we
}

// stopped returns the error of e when a partly applied event stopped its
// stream at or before e.
func (p *AtomicProjection) stopped(e framework.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pe := p.partial[e.StreamID]
	switch {
	case pe == nil || e.Sequence < pe.Sequence:
		return nil
	case e.Sequence == pe.Sequence:
		return pe
	}
	return &WriteError{Kind: ErrPartialWrite, Projection: p.keys.name, StreamID: e.StreamID, Sequence: e.Sequence, EventID: e.EventID,
		Code: "STOPPED", Reason: fmt.Sprintf("event %d %q of the stream was partly applied; the stream stays stopped until the read model is repaired and the process restarts", pe.Sequence, pe.EventID)}
}

// globEscape escapes the characters SCAN MATCH treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
