package framework_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
)

// streamByStream hides every capability of a store but EventStore, so
// that the runner reads it stream by stream.
type streamByStream struct{ framework.EventStore }

// interleaved reads the listed streams through read, one event of each in
// turn, and turns a stream's error into a *StreamError: a
// MultiStreamReader made of ReadStream, for stores written for tests.
func interleaved(ctx context.Context, read func(ctx context.Context, id string, after uint64) iter.Seq2[framework.Event, error], streams []framework.StreamCursor) iter.Seq2[framework.Event, error] {
	return func(yield func(framework.Event, error) bool) {
		type open struct {
			id   string
			next func() (framework.Event, error, bool)
			stop func()
		}
		var opened []open
		defer func() {
			for _, o := range opened {
				o.stop()
			}
		}()
		for _, c := range streams {
			next, stop := iter.Pull2(read(ctx, c.StreamID, c.After))
			opened = append(opened, open{c.StreamID, next, stop})
		}
		for len(opened) > 0 {
			kept := opened[:0]
			for _, o := range opened {
				e, err, ok := o.next()
				switch {
				case !ok:
					o.stop()
					continue
				case err != nil:
					o.stop()
					if !yield(framework.Event{}, &framework.StreamError{StreamID: o.id, Err: err}) {
						return
					}
					continue
				}
				if !yield(e, nil) {
					return
				}
				kept = append(kept, o)
			}
			opened = kept
		}
	}
}

func (s *brokenStore) ReadStreams(ctx context.Context, streams []framework.StreamCursor) iter.Seq2[framework.Event, error] {
	return interleaved(ctx, s.ReadStream, streams)
}

// scriptedStore holds whatever events a test gives it, gaps and repeats
// included, the way a topic written by several producers can; readErr
// makes a stream's read fail after its first few events.
type scriptedStore struct {
	framework.EventStore // nil: only the read methods are used
	streams              map[string][]framework.Event
	readErr              map[string]int // stream: events yielded before the error
}

var errScriptedRead = errors.New("scripted read error")

func (s *scriptedStore) ReadStream(ctx context.Context, streamID string, after uint64) iter.Seq2[framework.Event, error] {
	return func(yield func(framework.Event, error) bool) {
		n := 0
		for _, e := range s.streams[streamID] {
			if limit, ok := s.readErr[streamID]; ok && n == limit {
				yield(framework.Event{}, errScriptedRead)
				return
			}
			if e.Sequence <= after {
				continue
			}
			n++
			if !yield(e, nil) {
				return
			}
		}
	}
}

func (s *scriptedStore) ReadStreams(ctx context.Context, streams []framework.StreamCursor) iter.Seq2[framework.Event, error] {
	return interleaved(ctx, s.ReadStream, streams)
}

func (s *scriptedStore) ListStreams(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for _, id := range slices.Sorted(maps.Keys(s.streams)) {
			if strings.HasPrefix(id, prefix) && !yield(id, nil) {
				return
			}
		}
	}
}

func newScriptedStore() *scriptedStore {
	s := &scriptedStore{streams: map[string][]framework.Event{}, readErr: map[string]int{"process/t1/readerr": 3}}
	add := func(id string, events ...framework.Event) { s.streams[id] = append(s.streams[id], events...) }
	add("process/t1/ok", evs("process/t1/ok", 1, 2, 3, 4, 5, 6, 7)...)
	add("process/t1/gap", evs("process/t1/gap", 1, 2, 3, 5, 6)...)
	add("process/t1/redelivered", evs("process/t1/redelivered", 1, 2, 2, 3, 4)...)
	conflict := ev("process/t1/conflict", 2)
	conflict.EventID = "another writer's event"
	add("process/t1/conflict", ev("process/t1/conflict", 1), ev("process/t1/conflict", 2), conflict, ev("process/t1/conflict", 3))
	add("process/t1/readerr", evs("process/t1/readerr", 1, 2, 3, 4, 5, 6)...)
	add("process/t1/applyerr", evs("process/t1/applyerr", 1, 2, 3, 4, 5)...)
	add("process/t1/late", evs("process/t1/late", 2, 3)...) // does not start at 1
	add("process/t2/other", evs("process/t2/other", 1, 2, 3)...)
	return s
}

// runOutcome is what a run did, in a form two runs can be compared by.
type runOutcome struct {
	cursors          map[string]uint64
	applied, skipped int64
	streams          int
	failed           map[string]string // stream: error text
	otherErr         string            // the part of the error that is no StreamError
	errText          string            // the whole error: the same streams in the same order
	seqs             map[string][]uint64
	saved            map[string]uint64 // CatchUpPersistent: the stored checkpoint
}

func outcomeOf(res framework.Result, err error, c *counter) runOutcome {
	out := runOutcome{cursors: cursors(res.Checkpoint), applied: res.Applied, skipped: res.Skipped, streams: res.Streams,
		failed: map[string]string{}, seqs: map[string][]uint64{}}
	for id, err := range streamErrors(err) {
		out.failed[id] = err.Error()
	}
	if err != nil {
		var rest []string
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "framework: stream ") {
				rest = append(rest, line)
			}
		}
		out.otherErr = strings.Join(rest, "\n")
		out.errText = err.Error()
	}
	for id, seqs := range c.applied {
		out.seqs[id] = slices.Clone(seqs)
	}
	return out
}

func (o runOutcome) diff(other runOutcome) string {
	var d []string
	if !maps.Equal(o.cursors, other.cursors) {
		d = append(d, fmt.Sprintf("cursors %v vs %v", o.cursors, other.cursors))
	}
	if o.applied != other.applied || o.skipped != other.skipped || o.streams != other.streams {
		d = append(d, fmt.Sprintf("applied/skipped/streams %d/%d/%d vs %d/%d/%d", o.applied, o.skipped, o.streams, other.applied, other.skipped, other.streams))
	}
	if !maps.Equal(o.failed, other.failed) {
		d = append(d, fmt.Sprintf("failed streams\n%v\nvs\n%v", o.failed, other.failed))
	}
	if o.otherErr != other.otherErr {
		d = append(d, fmt.Sprintf("run error %q vs %q", o.otherErr, other.otherErr))
	}
	if o.errText != other.errText {
		d = append(d, fmt.Sprintf("error\n%s\nvs\n%s", o.errText, other.errText))
	}
	if !maps.EqualFunc(o.seqs, other.seqs, slices.Equal) {
		d = append(d, fmt.Sprintf("applied sequences %v vs %v", o.seqs, other.seqs))
	}
	if !maps.Equal(o.saved, other.saved) {
		d = append(d, fmt.Sprintf("saved checkpoint %v vs %v", o.saved, other.saved))
	}
	return strings.Join(d, "\n")
}

// TestOnePassMatchesStreamByStream runs every multi-stream entry point over
// the same events twice, once read stream by stream and once in one pass
// (MultiStreamReader), and requires the same Result, the same errors per
// stream, the same applied events and the same saved cursors: over a gap,
// a redelivered event, a conflicting repeat, a read error and a projection
// error part way, a stream that does not start at 1, a stream outside the
// prefix, an invalid and a repeated ID in the listing, and cursors part way
// into streams.
func TestOnePassMatchesStreamByStream(t *testing.T) {
	ctx := t.Context()
	store := newScriptedStore()
	listed := []string{"process/t1/ok", "process/t1/gap", "process/t1/redelivered", "process/t1/conflict", "process/t1/readerr",
		"process/t1/applyerr", "process/t1/late", "process/t1/missing", "process/t1/ok", "not a valid\x00id"}
	midway := map[string]uint64{"process/t1/ok": 3, "process/t1/gap": 2, "process/t1/redelivered": 1, "process/t1/readerr": 2,
		"process/t1/applyerr": 2, "process/t1/conflict": 1, "process/t9/unlisted": 4}
	from := framework.NewGlobalProjectionCheckpoint()
	for id, seq := range midway {
		from.Advance(id, seq)
	}
	entryPoints := []struct {
		name string
		run  func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, map[string]uint64, error)
	}{
		{"RunAllStreams", func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, map[string]uint64, error) {
			res, err := r.RunAllStreams(ctx, c, s, listed)
			return res, nil, err
		}},
		{"CatchUpAllStreams", func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, map[string]uint64, error) {
			res, err := r.CatchUpAllStreams(ctx, c, s, listed, from)
			return res, nil, err
		}},
		{"RunPrefix", func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, map[string]uint64, error) {
			res, err := r.RunPrefix(ctx, c, s, "process/t1/")
			return res, nil, err
		}},
		{"CatchUpPrefix", func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, map[string]uint64, error) {
			res, err := r.CatchUpPrefix(ctx, c, s, "process/t1/", from)
			return res, nil, err
		}},
		{"CatchUpPersistent", func(r *framework.ProjectionRunner, c *counter, s framework.EventStore) (framework.Result, map[string]uint64, error) {
			cps := memstore.NewCheckpointStore()
			if err := cps.Save(ctx, c.Name(), from); err != nil {
				t.Fatal(err)
			}
			res, err := r.CatchUpPersistent(ctx, c, s, cps, "process/t1/")
			saved, loadErr := cps.Load(ctx, c.Name())
			if loadErr != nil {
				t.Fatal(loadErr)
			}
			return res, cursors(saved), err
		}},
	}
	errProjection := errors.New("read model down")
	for _, ep := range entryPoints {
		for _, concurrency := range []int{1, 3} {
			for _, batch := range []int{1, 2, 256} {
				t.Run(fmt.Sprintf("%s/concurrency%d/batch%d", ep.name, concurrency, batch), func(t *testing.T) {
					r := runner(t, framework.RunnerConfig{Concurrency: concurrency, BatchSize: batch})
					run := func(s framework.EventStore) runOutcome {
						c := newCounter()
						c.fail = func(e framework.Event) error {
							if e.StreamID == "process/t1/applyerr" && e.Sequence == 4 {
								return errProjection
							}
							return nil
						}
						res, saved, err := ep.run(r, c, s)
						out := outcomeOf(res, err, c)
						out.saved = saved
						return out
					}
					want, got := run(streamByStream{store}), run(store)
					if d := want.diff(got); d != "" {
						t.Fatalf("stream by stream vs one pass:\n%s", d)
					}
					// The runs failed where the faults are, and only there.
					wantFailed := []string{"process/t1/applyerr", "process/t1/conflict", "process/t1/gap", "process/t1/late", "process/t1/readerr"}
					if strings.HasPrefix(ep.name, "RunAll") || strings.HasPrefix(ep.name, "CatchUpAll") {
						wantFailed = append(wantFailed, "not a valid\x00id")
					}
					slices.Sort(wantFailed)
					if gotFailed := slices.Sorted(maps.Keys(got.failed)); !slices.Equal(gotFailed, wantFailed) {
						t.Errorf("failed streams %q, want %q", gotFailed, wantFailed)
					}
					if got.cursors["process/t1/ok"] != 7 || got.cursors["process/t1/redelivered"] != 4 {
						t.Errorf("cursors %v: the healthy streams did not reach their heads", got.cursors)
					}
				})
			}
		}
	}
}

// TestOnePassStopsOnAReadErrorOfNoStream: an error of a MultiStreamReader that is
// not a stream's stops the run, after applying what was read, with cursors
// that cover exactly the applied events.
func TestOnePassStopsOnAReadErrorOfNoStream(t *testing.T) {
	errDown := errors.New("store down")
	for _, concurrency := range []int{1, 3} {
		t.Run(fmt.Sprintf("concurrency%d", concurrency), func(t *testing.T) {
			store := &failingReader{scriptedStore: newScriptedStore(), after: 5, err: errDown}
			c := newCounter()
			res, err := runner(t, framework.RunnerConfig{Concurrency: concurrency, BatchSize: 256}).RunPrefix(t.Context(), c, store, "process/t1/ok")
			if !errors.Is(err, errDown) {
				t.Fatalf("error = %v, want the store's", err)
			}
			if se, ok := errors.AsType[*framework.StreamError](err); ok {
				t.Errorf("the store's failure reported as stream %s's", se.StreamID)
			}
			if got := c.got("process/t1/ok"); !slices.Equal(got, seqRange(5)) || res.Checkpoint.Cursor("process/t1/ok") != 5 || res.Applied != 5 {
				t.Errorf("applied %v, cursor %d, result applied %d; want the 5 events read, cursor 5", got, res.Checkpoint.Cursor("process/t1/ok"), res.Applied)
			}
		})
	}
}

// failingReader's ReadStreams fails as a whole after yielding some events.
type failingReader struct {
	*scriptedStore
	after int
	err   error
}

func (s *failingReader) ReadStreams(ctx context.Context, streams []framework.StreamCursor) iter.Seq2[framework.Event, error] {
	return func(yield func(framework.Event, error) bool) {
		n := 0
		for e, err := range s.scriptedStore.ReadStreams(ctx, streams) {
			if n == s.after {
				yield(framework.Event{}, s.err)
				return
			}
			n++
			if !yield(e, err) {
				return
			}
		}
	}
}
