// Package guardtest is the conformance suite of [appendguard.Registry]:
// every implementation runs it in its tests.
package guardtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
)

// Run runs the suite. newRegistry returns a registry that shares nothing
// with the registries of earlier calls (or uses stream IDs it never saw:
// every subtest uses its own).
func Run(t *testing.T, newRegistry func(t *testing.T) appendguard.Registry) {
	t.Run("UnknownStreamIsSeededOnce", func(t *testing.T) { unknownStreamIsSeededOnce(t, newRegistry(t)) })
	t.Run("ExpectedVersions", func(t *testing.T) { expectedVersions(t, newRegistry(t)) })
	t.Run("OneLiveReservation", func(t *testing.T) { oneLiveReservation(t, newRegistry(t)) })
	t.Run("ExpiredReservationIsRepaired", func(t *testing.T) { expiredReservationIsRepaired(t, newRegistry(t)) })
	t.Run("CommitAfterARepair", func(t *testing.T) { commitAfterARepair(t, newRegistry(t)) })
	t.Run("ReleaseKeepsTheHead", func(t *testing.T) { releaseKeepsTheHead(t, newRegistry(t)) })
	t.Run("ConcurrentReserveHasOneWinner", func(t *testing.T) { concurrentReserveHasOneWinner(t, newRegistry(t)) })
	t.Run("BadArguments", func(t *testing.T) { badArguments(t, newRegistry(t)) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var streamSeq struct {
	sync.Mutex
	n int
}

// newStream returns a stream ID no earlier subtest of this process used.
func newStream(t *testing.T) string {
	streamSeq.Lock()
	defer streamSeq.Unlock()
	streamSeq.n++
	return fmt.Sprintf("guardtest/%d/%d", time.Now().UnixNano(), streamSeq.n)
}

func seed(t *testing.T, r appendguard.Registry, id string, h appendguard.Head) {
	t.Helper()
	if _, err := r.Seed(ctxFor(t), id, h); err != nil {
		t.Fatal(err)
	}
}

func reserve(t *testing.T, r appendguard.Registry, id string, expected framework.ExpectedVersion, n int, lease time.Duration) appendguard.Reservation {
	t.Helper()
	res, err := r.Reserve(ctxFor(t), id, expected, n, "writer-a", lease)
	if err != nil {
		t.Fatalf("Reserve(%s, %v, %d): %v", id, expected, n, err)
	}
	return res
}

func head(t *testing.T, r appendguard.Registry, id string) (appendguard.Head, *appendguard.Reservation) {
	t.Helper()
	h, p, ok, err := r.Get(ctxFor(t), id)
	if err != nil || !ok {
		t.Fatalf("Get(%s) = %v, %v", id, ok, err)
	}
	return h, p
}

func unknownStreamIsSeededOnce(t *testing.T, r appendguard.Registry) {
	ctx := ctxFor(t)
	id := newStream(t)
	if _, err := r.Reserve(ctx, id, framework.NoStream, 1, "w", time.Minute); !errors.Is(err, appendguard.ErrUnknownStream) {
		t.Fatalf("Reserve of an unknown stream: %v, want ErrUnknownStream", err)
	}
	if _, _, ok, err := r.Get(ctx, id); ok || err != nil {
		t.Fatalf("Get of an unknown stream: %v, %v", ok, err)
	}
	got, err := r.Seed(ctx, id, appendguard.Head{Sequence: 4, Offset: 40})
	if err != nil || got != (appendguard.Head{Sequence: 4, Offset: 40}) {
		t.Fatalf("Seed = %+v, %v", got, err)
	}
	// A second, staler seed does not move the head.
	got, err = r.Seed(ctx, id, appendguard.Head{Sequence: 2, Offset: 20})
	if err != nil || got != (appendguard.Head{Sequence: 4, Offset: 40}) {
		t.Fatalf("second Seed = %+v, %v; want the first head kept", got, err)
	}
}

func expectedVersions(t *testing.T, r appendguard.Registry) {
	ctx := ctxFor(t)
	id := newStream(t)
	seed(t, r, id, appendguard.Head{Offset: -1})
	_, err := r.Reserve(ctx, id, framework.ExactVersion(3), 1, "w", time.Minute)
	var conflict *framework.VersionConflictError
	if !errors.As(err, &conflict) || conflict.Actual != 0 || conflict.StreamID != id {
		t.Fatalf("Reserve at version 3 of a new stream: %v, want a conflict at 0", err)
	}
	res := reserve(t, r, id, framework.NoStream, 3, time.Minute)
	if res.First != 1 || res.N != 3 || res.Last() != 3 || res.Head.Sequence != 0 || res.Token == "" || res.Writer != "writer-a" || res.Partition != -1 || res.FirstOffset != -1 || res.LastOffset != -1 {
		t.Fatalf("reservation %+v", res)
	}
	if err := r.Record(ctx, res, 2, 7, 9); err != nil {
		t.Fatal(err)
	}
	if _, p := head(t, r, id); p == nil || p.Token != res.Token || p.Partition != 2 || p.FirstOffset != 7 || p.LastOffset != 9 {
		t.Fatalf("pending after Record = %+v", p)
	}
	if err := r.Commit(ctx, res, 9); err != nil {
		t.Fatal(err)
	}
	if h, p := head(t, r, id); h != (appendguard.Head{Sequence: 3, Offset: 9}) || p != nil {
		t.Fatalf("after Commit: head %+v pending %+v", h, p)
	}
	// Committing again is harmless.
	if err := r.Commit(ctx, res, 9); err != nil {
		t.Fatalf("a repeated Commit: %v", err)
	}
	if _, err := r.Reserve(ctx, id, framework.NoStream, 1, "w", time.Minute); !errors.As(err, &conflict) || conflict.Actual != 3 {
		t.Fatalf("NoStream on a stream at 3: %v", err)
	}
	res = reserve(t, r, id, framework.ExactVersion(3), 1, time.Minute)
	if res.First != 4 {
		t.Fatalf("reservation %+v, want sequence 4", res)
	}
	if err := r.Commit(ctx, res, 12); err != nil {
		t.Fatal(err)
	}
	res = reserve(t, r, id, framework.AnyVersion, 2, time.Minute)
	if res.First != 5 || res.Head != (appendguard.Head{Sequence: 4, Offset: 12}) {
		t.Fatalf("AnyVersion reservation %+v", res)
	}
}

func oneLiveReservation(t *testing.T, r appendguard.Registry) {
	ctx := ctxFor(t)
	id := newStream(t)
	seed(t, r, id, appendguard.Head{Sequence: 1, Offset: 0})
	res := reserve(t, r, id, framework.ExactVersion(1), 1, time.Minute)
	_, err := r.Reserve(ctx, id, framework.AnyVersion, 1, "writer-b", time.Minute)
	var busy *appendguard.BusyError
	if !errors.As(err, &busy) || busy.Writer != "writer-a" || busy.Left <= 0 || busy.Left > time.Minute {
		t.Fatalf("a second reservation while one is live: %v, want busy", err)
	}
	// The expectation is checked first: a stale expectation is a
	// conflict even while the stream is reserved.
	var conflict *framework.VersionConflictError
	if _, err := r.Reserve(ctx, id, framework.NoStream, 1, "writer-b", time.Minute); !errors.As(err, &conflict) {
		t.Fatalf("NoStream while reserved: %v, want a conflict", err)
	}
	if err := r.Commit(ctx, res, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reserve(ctx, id, framework.ExactVersion(1), 1, "writer-b", time.Minute); !errors.As(err, &conflict) || conflict.Actual != 2 {
		t.Fatalf("the loser's retry: %v, want a conflict at 2", err)
	}
}

func expiredReservationIsRepaired(t *testing.T, r appendguard.Registry) {
	ctx := ctxFor(t)
	id := newStream(t)
	seed(t, r, id, appendguard.Head{Offset: -1})
	res := reserve(t, r, id, framework.NoStream, 2, 300*time.Millisecond)
	if err := r.Record(ctx, res, 5, 10, 11); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	// The lease ended: its writer may not record again, and the next
	// writer is told to repair.
	if err := r.Record(ctx, res, 5, 10, 11); !errors.Is(err, appendguard.ErrLeaseLost) {
		t.Fatalf("Record after the lease: %v, want ErrLeaseLost", err)
	}
	_, err := r.Reserve(ctx, id, framework.AnyVersion, 1, "writer-b", time.Minute)
	var expired *appendguard.ExpiredError
	if !errors.As(err, &expired) {
		t.Fatalf("Reserve after the lease: %v, want expired", err)
	}
	p := expired.Reservation
	if p.Token != res.Token || p.Writer != "writer-a" || p.First != 1 || p.N != 2 || p.Partition != 5 || p.FirstOffset != 10 || p.LastOffset != 11 {
		t.Fatalf("expired reservation %+v", p)
	}
	if err := r.Resolve(ctx, p, true, 11); err != nil {
		t.Fatal(err)
	}
	// A second repairer's resolution comes too late and changes nothing.
	if err := r.Resolve(ctx, p, false, -1); err != nil {
		t.Fatal(err)
	}
	if h, pend := head(t, r, id); h != (appendguard.Head{Sequence: 2, Offset: 11}) || pend != nil {
		t.Fatalf("after the repair: head %+v pending %+v", h, pend)
	}
	next := reserve(t, r, id, framework.ExactVersion(2), 1, time.Minute)
	if next.First != 3 {
		t.Fatalf("next reservation %+v", next)
	}
}

func commitAfterARepair(t *testing.T, r appendguard.Registry) {
	ctx := ctxFor(t)
	written, unwritten := newStream(t), newStream(t)
	for _, id := range []string{written, unwritten} {
		seed(t, r, id, appendguard.Head{Offset: -1})
	}
	a := reserve(t, r, written, framework.NoStream, 1, 200*time.Millisecond)
	b := reserve(t, r, unwritten, framework.NoStream, 1, 200*time.Millisecond)
	time.Sleep(400 * time.Millisecond)
	if err := r.Resolve(ctx, a, true, 3); err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(ctx, b, false, -1); err != nil {
		t.Fatal(err)
	}
	// A writer that committed while a repair found its records written
	// learns that its commit stands.
	if err := r.Commit(ctx, a, 3); err != nil {
		t.Fatalf("Commit after a repair resolved it as written: %v", err)
	}
	if err := r.Commit(ctx, b, 4); !errors.Is(err, appendguard.ErrResolvedUnwritten) {
		t.Fatalf("Commit after a repair resolved it as not written: %v", err)
	}
	if h, _ := head(t, r, unwritten); h.Sequence != 0 {
		t.Fatalf("the refused commit moved the head to %+v", h)
	}
}

func releaseKeepsTheHead(t *testing.T, r appendguard.Registry) {
	ctx := ctxFor(t)
	id := newStream(t)
	seed(t, r, id, appendguard.Head{Sequence: 7, Offset: 70})
	res := reserve(t, r, id, framework.ExactVersion(7), 3, time.Minute)
	if err := r.Resolve(ctx, res, false, -1); err != nil {
		t.Fatal(err)
	}
	if h, p := head(t, r, id); h != (appendguard.Head{Sequence: 7, Offset: 70}) || p != nil {
		t.Fatalf("after a release: head %+v pending %+v", h, p)
	}
	if err := r.Record(ctx, res, 0, 1, 2); !errors.Is(err, appendguard.ErrLeaseLost) {
		t.Fatalf("Record after a release: %v", err)
	}
	if next := reserve(t, r, id, framework.ExactVersion(7), 1, time.Minute); next.First != 8 {
		t.Fatalf("next reservation %+v", next)
	}
}

func concurrentReserveHasOneWinner(t *testing.T, r appendguard.Registry) {
	ctx := ctxFor(t)
	for round := range 20 {
		id := newStream(t)
		seed(t, r, id, appendguard.Head{Offset: -1})
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = r.Reserve(ctx, id, framework.NoStream, 1, fmt.Sprintf("w%d", i), time.Minute)
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			var busy *appendguard.BusyError
			switch {
			case err == nil:
				won++
			case errors.As(err, &busy):
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d reservations won, want 1", round, won)
		}
	}
}

func badArguments(t *testing.T, r appendguard.Registry) {
	ctx := ctxFor(t)
	id := newStream(t)
	seed(t, r, id, appendguard.Head{Offset: -1})
	for _, c := range []struct {
		id     string
		n      int
		writer string
		lease  time.Duration
	}{{"", 1, "w", time.Second}, {id, 0, "w", time.Second}, {id, 1, "", time.Second}, {id, 1, "w", 0}} {
		if _, err := r.Reserve(ctx, c.id, framework.AnyVersion, c.n, c.writer, c.lease); err == nil {
			t.Errorf("Reserve(%q, n=%d, writer=%q, lease=%v) succeeded", c.id, c.n, c.writer, c.lease)
		}
	}
}
