package redischeckpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

// Read your writes: a caller that appended an event waits until the read
// model shows it before it queries (Marten's
// WaitForNonStaleProjectionDataAsync, a Kafka Streams IQv2 query bounded by
// a position). The position of an event is its stream and sequence; the
// read model covers it once the live version's cursor of the stream is at
// or above the sequence.
//
// Waiters do not poll Redis each. Per Store and projection one watcher
// goroutine runs while there are waiters: every Config.WaitPoll it reads,
// in one pipelined round trip, the live pointer, the cursors of every
// awaited stream in the version it takes to be live and their parked
// records, and releases the waiters whose stream is covered (or parked).
// The commands per round trip depend on the number of distinct streams
// awaited (one HMGET per Config.ChunkSize of them on each of the two
// hashes), not on the number of waiters. When the live pointer read in the
// round trip names another version than the one whose cursors were read,
// the watcher reads the new version's at once: a switch of the live
// version counts as soon as it is seen.

// ErrStreamParked reports a wait for a stream that is parked at or below
// the awaited sequence: the read model will not cover it before an admin
// resolves the stream. See [StreamParkedError].
var ErrStreamParked = errors.New("redischeckpoint: stream parked")

// StreamParkedError reports a wait ([Store.WaitFor]) that cannot end
// well: the stream is parked at Parked.Sequence, at or below the awaited
// sequence, in ReadModel (the live version). It matches [ErrStreamParked].
type StreamParkedError struct {
	// ReadModel is the versioned name of the live version: "billing@v2".
	ReadModel string
	StreamID  string
	// Sequence is the sequence awaited, Applied the stream's cursor.
	Sequence, Applied uint64
	// Parked is the stream's parked record.
	Parked controlplane.ParkedStream
}

func (e *StreamParkedError) Error() string {
	msg := fmt.Sprintf("redischeckpoint: %s cannot apply %s up to %d: the stream is parked at sequence %d (%s)",
		e.ReadModel, e.StreamID, e.Sequence, e.Parked.Sequence, e.Parked.Reason)
	if e.Parked.Error != "" {
		msg += ": " + e.Parked.Error
	}
	return msg
}

// Is reports whether target is [ErrStreamParked].
func (e *StreamParkedError) Is(target error) bool { return target == ErrStreamParked }

// WaitError reports a wait ([Store.WaitFor]) whose context ended before
// the read model covered the awaited event. It wraps the context's error
// (errors.Is(err, context.DeadlineExceeded)) and, when the last check
// failed, that error too.
type WaitError struct {
	// ReadModel is the version whose cursor was read last ("billing@v2"),
	// or the projection's name when none was read.
	ReadModel string
	StreamID  string
	// Sequence is the sequence awaited; Applied the stream's cursor when
	// it was read last (Checked false: never).
	Sequence, Applied uint64
	Checked           bool
	// Err is the context's error; LastError the last check's, if it failed.
	Err, LastError error
}

func (e *WaitError) Error() string {
	msg := fmt.Sprintf("redischeckpoint: %s has applied %s up to %d, waiting for %d", e.ReadModel, e.StreamID, e.Applied, e.Sequence)
	if !e.Checked {
		msg = fmt.Sprintf("redischeckpoint: waiting for %s to apply %s up to %d (its cursor was not read yet)", e.ReadModel, e.StreamID, e.Sequence)
	}
	if e.LastError != nil {
		msg += fmt.Sprintf(" (the last check failed: %v)", e.LastError)
	}
	return msg + ": " + e.Err.Error()
}

// Unwrap returns the context's error and the last check's.
func (e *WaitError) Unwrap() []error {
	if e.LastError == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.LastError}
}

// DefaultWaitPoll is the default of [Config.WaitPoll].
const DefaultWaitPoll = 20 * time.Millisecond

// waitCheckTimeout bounds one check of a watcher.
const waitCheckTimeout = 5 * time.Second

// WaitFor waits until the live version of projection (its name without a
// version) has applied stream streamID up to sequence, and returns the
// versioned name of the version whose cursor covered it ("billing@v2"):
// read that version, for it shows the event, also if the live pointer
// moves on meanwhile. Sequence 0 returns the live version at once.
//
// It fails with a [*StreamParkedError] ([ErrStreamParked]) as soon as the
// stream is seen parked at or below sequence, and with a [*WaitError]
// wrapping ctx.Err() when ctx ends first. A check that fails (Redis
// unreachable) is retried at the next tick; WaitError names its error.
//
// Waiters share one watcher per Store and projection: see the comment at
// the top of wait.go.
func (s *Store) WaitFor(ctx context.Context, projection, streamID string, sequence uint64) (string, error) {
	bare, err := s.bareKeys(projection)
	if err != nil {
		return "", err
	}
	if err := framework.ValidateStreamID(streamID); err != nil {
		return "", fmt.Errorf("redischeckpoint: wait for %s: %w", projection, err)
	}
	if sequence == 0 {
		return s.Live(ctx, projection)
	}
	wt := &waiter{stream: streamID, seq: sequence, done: make(chan struct{})}
	if err := ctx.Err(); err != nil {
		return "", wt.timeout(projection, err, nil)
	}
	w := s.watch(projection, bare, wt)
	select {
	case <-wt.done:
		return wt.name, wt.err
	case <-ctx.Done():
	}
	watchers.Lock()
	defer watchers.Unlock()
	select {
	case <-wt.done: // released meanwhile
		return wt.name, wt.err
	default:
	}
	delete(w.waiters, wt)
	return "", wt.timeout(projection, ctx.Err(), w.lastErr)
}

// waiter is one call of WaitFor. Its fields below done are guarded by
// watchers' mutex.
type waiter struct {
	stream string
	seq    uint64
	done   chan struct{} // closed when name or err is set

	name string
	err  error
	// readModel and applied are what the last check saw.
	readModel string
	applied   uint64
}

func (wt *waiter) timeout(projection string, ctxErr, lastErr error) error {
	e := &WaitError{ReadModel: projection, StreamID: wt.stream, Sequence: wt.seq, Err: ctxErr, LastError: lastErr}
	if wt.readModel != "" {
		e.ReadModel, e.Applied, e.Checked = wt.readModel, wt.applied, true
	}
	return e
}

type watchKey struct {
	s          *Store
	projection string
}

// watchers holds the running watchers. An entry lives only while its
// watcher has waiters, so a Store that is dropped is not held here.
var watchers = struct {
	sync.Mutex
	m map[watchKey]*watcher
}{m: map[watchKey]*watcher{}}

// watcher checks the waiters of one projection of one Store.
type watcher struct {
	s          *Store
	projection string
	bare       keys
	key        watchKey

	// Guarded by watchers' mutex.
	waiters map[*waiter]struct{}
	lastErr error // of the last check, nil when it succeeded

	// Used by the watcher's goroutine only.
	live    uint64 // the live version the last check found
	failing bool
}

// watch adds wt to the projection's watcher, starting it if none runs.
func (s *Store) watch(projection string, bare keys, wt *waiter) *watcher {
	key := watchKey{s, projection}
	watchers.Lock()
	defer watchers.Unlock()
	w := watchers.m[key]
	if w == nil {
		w = &watcher{s: s, projection: projection, bare: bare, key: key, waiters: map[*waiter]struct{}{}}
		watchers.m[key] = w
		go w.run()
	}
	w.waiters[wt] = struct{}{}
	return w
}

// run checks at once, then every tick, until no waiter is left.
func (w *watcher) run() {
	t := time.NewTicker(w.s.cfg.WaitPoll)
	defer t.Stop()
	for {
		pending := w.pending()
		if pending == nil {
			return
		}
		w.check(pending)
		<-t.C
	}
}

// pending returns the waiters, or nil after removing the watcher when
// there are none: a waiter that comes later starts a new one.
func (w *watcher) pending() []*waiter {
	watchers.Lock()
	defer watchers.Unlock()
	if len(w.waiters) == 0 {
		delete(watchers.m, w.key)
		return nil
	}
	out := make([]*waiter, 0, len(w.waiters))
	for wt := range w.waiters {
		out = append(out, wt)
	}
	return out
}

// check reads what the waiters wait for in one round trip (two when the
// live pointer moved) and releases those it can.
func (w *watcher) check(pending []*waiter) {
	ctx, cancel := context.WithTimeout(context.Background(), waitCheckTimeout)
	defer cancel()
	streams := make([]string, 0, len(pending))
	for _, wt := range pending {
		streams = append(streams, wt.stream)
	}
	slices.Sort(streams)
	streams = slices.Compact(streams)

	var st streamStates
	var err error
	for attempt := 0; ; attempt++ {
		var live uint64
		st, live, err = w.read(ctx, w.live, streams)
		if err != nil {
			break
		}
		moved := live != w.live
		w.live = live
		if !moved {
			break
		}
		if attempt == 1 {
			return // the pointer keeps moving: the next tick reads the version it names
		}
	}
	if err != nil && !w.failing {
		w.s.cfg.Logger.Warn("redischeckpoint: read-your-writes check failed; retrying every tick", "projection", w.projection, "err", err)
	}
	w.failing = err != nil

	watchers.Lock()
	defer watchers.Unlock()
	w.lastErr = err
	if err != nil {
		return
	}
	for _, wt := range pending {
		if _, ok := w.waiters[wt]; !ok {
			continue // gave up meanwhile
		}
		name, done, werr := st.judge(wt)
		if !done {
			continue
		}
		wt.name, wt.err = name, werr
		delete(w.waiters, wt)
		close(wt.done)
	}
}

// streamStates is what one check read: the cursors and parked records of
// the awaited streams in one version.
type streamStates struct {
	k       keys
	cursors map[string]string
	parked  map[string]string
}

// read reads the live pointer and, in the same round trip, the cursors
// and parked records of streams in version.
func (w *watcher) read(ctx context.Context, version uint64, streams []string) (streamStates, uint64, error) {
	k, err := w.s.keysFor(framework.VersionedName(w.projection, version))
	if err != nil {
		return streamStates{}, 0, err
	}
	pipe := w.s.client.Pipeline()
	liveCmd := pipe.HGet(ctx, w.bare.versions, "live")
	var curCmds, parkCmds []*redis.SliceCmd
	for chunk := range slices.Chunk(streams, w.s.cfg.ChunkSize) {
		curCmds = append(curCmds, pipe.HMGet(ctx, k.cursors, chunk...))
		parkCmds = append(parkCmds, pipe.HMGet(ctx, k.parked, chunk...))
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	live, err := uintOrZero(liveCmd.Result())
	if err != nil {
		return streamStates{}, 0, fmt.Errorf("redischeckpoint: live version of %s: %w", w.projection, err)
	}
	st := streamStates{k: k, cursors: make(map[string]string, len(streams)), parked: map[string]string{}}
	i := 0
	for c := range curCmds {
		cur, park := curCmds[c].Val(), parkCmds[c].Val()
		if err := errors.Join(curCmds[c].Err(), parkCmds[c].Err()); err != nil {
			return streamStates{}, 0, fmt.Errorf("redischeckpoint: cursors of %s: %w", k.name, err)
		}
		for j := range cur {
			id := streams[i]
			i++
			if v, ok := cur[j].(string); ok {
				st.cursors[id] = v
			}
			if v, ok := park[j].(string); ok {
				st.parked[id] = v
			}
		}
	}
	return st, live, nil
}

// judge says whether wt is done and how: covered (the version's name),
// parked or unreadable (an error). A waiter not done records what was
// seen, for its WaitError.
func (st streamStates) judge(wt *waiter) (string, bool, error) {
	var cursor uint64
	if raw, ok := st.cursors[wt.stream]; ok {
		var err error
		if cursor, err = parseCursor(st.k.cursors, wt.stream, raw); err != nil {
			return "", true, err
		}
	}
	if cursor >= wt.seq {
		return st.k.name, true, nil
	}
	wt.readModel, wt.applied = st.k.name, cursor
	raw, ok := st.parked[wt.stream]
	if !ok {
		return "", false, nil
	}
	var p controlplane.ParkedStream
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return "", true, fmt.Errorf("redischeckpoint: key %s field %q: %w", st.k.parked, wt.stream, err)
	}
	if p.Sequence > wt.seq {
		return "", false, nil // parked after the awaited event: the cursor will cover it
	}
	p.Resolving = nil
	return "", true, &StreamParkedError{ReadModel: st.k.name, StreamID: wt.stream, Sequence: wt.seq, Applied: cursor, Parked: p}
}
