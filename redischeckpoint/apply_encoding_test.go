package redischeckpoint_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

// onBothRedis runs test against the test binary's Redis (real under
// scripts/test.sh) and against an in-process miniredis (gopher-lua runs
// the scripts there), each with a store and a fence of its own.
func onBothRedis(t *testing.T, test func(t *testing.T, s *redischeckpoint.Store, c redis.UniversalClient, fenced func() *fencedCtx)) {
	t.Run("redis", func(t *testing.T) {
		s, env, _ := newStore(t, redischeckpoint.Config{})
		test(t, s, env.Client, fencer(t, s))
	})
	t.Run("miniredis", func(t *testing.T) {
		m := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		s, err := redischeckpoint.New(redischeckpoint.Config{Client: c})
		if err != nil {
			t.Fatal(err)
		}
		test(t, s, c, fencer(t, s))
	})
}

type fencedCtx struct{ f controlplane.Fence }

func fencer(t *testing.T, s *redischeckpoint.Store) func() *fencedCtx {
	return func() *fencedCtx {
		f, err := s.AcquireFence(ctxFor(t), "enc", 0)
		if err != nil {
			t.Fatal(err)
		}
		return &fencedCtx{f}
	}
}

// TestApplyEncodingCarriesHostileValuesExactly sends values the argument
// encoding must carry byte for byte: empty strings, every byte value
// (NUL, CR LF, invalid UTF-8), separators the encoding could confuse (a
// slash, spaces, "@"), a 1 MiB value, numbers as strings, and event IDs
// and stream IDs that look like the encoding's own counts.
func TestApplyEncodingCarriesHostileValuesExactly(t *testing.T) {
	var all []byte
	for b := range 256 {
		all = append(all, byte(b))
	}
	huge := strings.Repeat("\x00\xffh", 1<<20/3)
	values := []string{"", string(all), "a b@1/2 c", "\r\n*3\r\n$4\r\nPING\r\n", huge, "1", "-0", "007", "HINCRBY", "nan"}
	onBothRedis(t, func(t *testing.T, s *redischeckpoint.Store, c redis.UniversalClient, fenced func() *fencedCtx) {
		ctx := controlplane.WithFence(ctxFor(t), fenced().f)
		p, err := s.NewAtomicProjection("enc", func(e framework.Event, w *redischeckpoint.Writes) error {
			i, _ := strconv.Atoi(string(e.Data))
			v := values[i]
			w.HSet(w.Key("h"), v, v)
			w.Set(w.Key("s", strconv.Itoa(i)), v)
			w.SAdd(w.Key("set"), v)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var events []framework.Event
		for i := range values {
			// Stream IDs and event IDs that look like counts and ops.
			stream := fmt.Sprintf("process/enc/%d", i%3)
			events = append(events, framework.Event{StreamID: stream, Sequence: uint64(i/3 + 1), EventID: []string{"", "1", "HSET 3", "a b"}[i%4],
				Data: []byte(strconv.Itoa(i)), Position: &framework.Position{Partition: 0, Offset: int64(i)}})
		}
		n, err := p.ApplyBatch(ctx, events)
		if err != nil || n != len(events) {
			t.Fatalf("ApplyBatch = %d, %v", n, err)
		}
		h, err := c.HGetAll(ctx, p.Key("h")).Result()
		if err != nil {
			t.Fatal(err)
		}
		members, err := c.SMembers(ctx, p.Key("set")).Result()
		if err != nil {
			t.Fatal(err)
		}
		inSet := map[string]bool{}
		for _, m := range members {
			inSet[m] = true
		}
		for i, v := range values {
			if got, ok := h[v]; !ok || got != v {
				t.Errorf("field %d (%d bytes): got %d bytes, present %v", i, len(v), len(got), ok)
			}
			if got, err := c.Get(ctx, p.Key("s", strconv.Itoa(i))).Result(); err != nil || got != v {
				t.Errorf("string %d (%d bytes): got %d bytes, %v", i, len(v), len(got), err)
			}
			if !inSet[v] {
				t.Errorf("member %d (%d bytes) missing", i, len(v))
			}
		}
		if len(h) != len(values) || len(members) != len(values) {
			t.Errorf("hash has %d fields, set %d members, want %d each", len(h), len(members), len(values))
		}
		// The heads carry the event IDs as they were.
		heads, err := s.Heads(ctx, "enc", []string{"process/enc/0", "process/enc/1", "process/enc/2"})
		if err != nil {
			t.Fatal(err)
		}
		for i := len(events) - 3; i < len(events); i++ {
			e := events[i]
			if got := heads[e.StreamID]; got.Sequence != e.Sequence || got.EventID != e.EventID && e.EventID != "" {
				t.Errorf("head of %s = %+v, want sequence %d event %q", e.StreamID, got, e.Sequence, e.EventID)
			}
		}
		// Delivered again: every event skipped, nothing changed.
		n, err = p.ApplyBatch(ctx, events)
		if err != nil || n != len(events) {
			t.Fatalf("ApplyBatch again = %d, %v", n, err)
		}
		if again, _ := c.HGetAll(ctx, p.Key("h")).Result(); len(again) != len(values) {
			t.Errorf("after the redelivery the hash has %d fields", len(again))
		}
		if got := p.Skipped(); got != int64(len(events)) {
			t.Errorf("skipped %d, want %d", got, len(events))
		}
	})
}

// TestApplyEncodingManyStreamsInOneBatch applies 2,600 events of 1,300
// streams in one ApplyBatch (several script calls, each past the chunk of
// 1,000 fields its cursor reads and writes use), mixing events of one
// command, events of several writes, events of no write and events
// already applied, and checks every count, cursor and head.
func TestApplyEncodingManyStreamsInOneBatch(t *testing.T) {
	onBothRedis(t, func(t *testing.T, s *redischeckpoint.Store, c redis.UniversalClient, fenced func() *fencedCtx) {
		ctx := controlplane.WithFence(ctxFor(t), fenced().f)
		p, err := s.NewAtomicProjection("enc", func(e framework.Event, w *redischeckpoint.Writes) error {
			switch e.Type {
			case "One":
				w.HIncrBy(w.Key("counts"), e.StreamID, 1)
			case "Two":
				w.HIncrBy(w.Key("counts"), e.StreamID, 1)
				w.IncrBy(w.Key("twos"), 1)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		const streams = 1300
		var events []framework.Event
		wantCounts, wantTwos := map[string]int64{}, int64(0)
		for seq := uint64(1); seq <= 2; seq++ {
			for i := range streams {
				stream := fmt.Sprintf("process/many/%05d", i)
				typ := []string{"One", "Two", "None"}[(i+int(seq))%3]
				events = append(events, framework.Event{StreamID: stream, Sequence: seq, EventID: fmt.Sprintf("%s#%d", stream, seq), Type: typ,
					Position: &framework.Position{Partition: 2, Offset: int64(len(events))}})
				switch typ {
				case "One":
					wantCounts[stream]++
				case "Two":
					wantCounts[stream]++
					wantTwos++
				}
			}
		}
		// The first 100 events applied before: redelivered in the batch.
		if n, err := p.ApplyBatch(ctx, events[:100]); err != nil || n != 100 {
			t.Fatalf("ApplyBatch of the first 100 = %d, %v", n, err)
		}
		n, err := p.ApplyBatch(ctx, events)
		if err != nil || n != len(events) {
			t.Fatalf("ApplyBatch = %d, %v", n, err)
		}
		if p.Skipped() != 100 {
			t.Errorf("skipped %d, want 100", p.Skipped())
		}
		counts, err := c.HGetAll(ctx, p.Key("counts")).Result()
		if err != nil {
			t.Fatal(err)
		}
		for stream, want := range wantCounts {
			if counts[stream] != strconv.FormatInt(want, 10) {
				t.Errorf("count of %s = %q, want %d", stream, counts[stream], want)
			}
		}
		if got, _ := c.Get(ctx, p.Key("twos")).Int64(); got != wantTwos {
			t.Errorf("twos = %d, want %d", got, wantTwos)
		}
		ids := make([]string, streams)
		for i := range ids {
			ids[i] = fmt.Sprintf("process/many/%05d", i)
		}
		heads, err := s.Heads(ctx, "enc", ids)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			want := events[streams+i]
			h := heads[id]
			if h.Sequence != 2 || h.EventID != want.EventID || h.Position == nil || h.Position.Offset != want.Position.Offset {
				t.Fatalf("head of %s = %+v, want sequence 2 %s at offset %d", id, h, want.EventID, want.Position.Offset)
			}
		}
	})
}

// TestApplyEncodingRefusalInTheMiddle refuses an event in the middle of a
// batch, once for an event of one command (run without the checks) and
// once for an event of two writes whose second would fail after its first
// ran (the checks refuse it before either runs): the events before it are
// applied with their cursors, nothing of it or after it is written, and
// after the cause is fixed the rest applies.
func TestApplyEncodingRefusalInTheMiddle(t *testing.T) {
	for _, two := range []bool{false, true} {
		t.Run(fmt.Sprintf("two-writes=%v", two), func(t *testing.T) {
			onBothRedis(t, func(t *testing.T, s *redischeckpoint.Store, c redis.UniversalClient, fenced func() *fencedCtx) {
				ctx := controlplane.WithFence(ctxFor(t), fenced().f)
				p, err := s.NewAtomicProjection("enc", func(e framework.Event, w *redischeckpoint.Writes) error {
					if two {
						w.HIncrBy(w.Key("first"), e.StreamID, 1)
					}
					w.HIncrBy(w.Key("counts"), e.EventID, 1)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := c.HSet(ctx, p.Key("counts"), "bad", "not a number").Err(); err != nil {
					t.Fatal(err)
				}
				events := []framework.Event{
					{StreamID: "process/mid/a", Sequence: 1, EventID: "ok1"},
					{StreamID: "process/mid/b", Sequence: 1, EventID: "ok2"},
					{StreamID: "process/mid/a", Sequence: 2, EventID: "bad"},
					{StreamID: "process/mid/c", Sequence: 1, EventID: "ok3"},
				}
				n, err := p.ApplyBatch(ctx, events)
				var we *redischeckpoint.WriteError
				if n != 2 || !errors.As(err, &we) || !errors.Is(err, redischeckpoint.ErrWriteRefused) || we.Code != "NOTINT" ||
					we.Op != "HINCRBY" || we.Key != p.Key("counts") || we.Field != "bad" || we.StreamID != "process/mid/a" || we.Sequence != 2 {
					t.Fatalf("ApplyBatch = %d, %#v (%v); want 2 and a NOTINT refusal of HINCRBY %s bad", n, err, err, p.Key("counts"))
				}
				cursors, err := s.Cursors(ctx, "enc", []string{"process/mid/a", "process/mid/b", "process/mid/c"})
				if err != nil {
					t.Fatal(err)
				}
				if cursors["process/mid/a"] != 1 || cursors["process/mid/b"] != 1 || cursors["process/mid/c"] != 0 {
					t.Errorf("cursors %v, want a=1 b=1 c=0", cursors)
				}
				first, _ := c.HGetAll(ctx, p.Key("first")).Result()
				if two && (first["process/mid/a"] != "1" || len(first) != 2) {
					t.Errorf("first %v: the refused event's first write ran, or an earlier event's is missing", first)
				}
				if got, _ := c.HGet(ctx, p.Key("counts"), "ok3").Result(); got != "" {
					t.Errorf("the event after the refused one was applied: %q", got)
				}
				if err := c.HSet(ctx, p.Key("counts"), "bad", "41").Err(); err != nil {
					t.Fatal(err)
				}
				if n, err := p.ApplyBatch(ctx, events[2:]); err != nil || n != 2 {
					t.Fatalf("ApplyBatch after the fix = %d, %v", n, err)
				}
				got, _ := c.HMGet(ctx, p.Key("counts"), "ok1", "ok2", "bad", "ok3").Result()
				if fmt.Sprint(got) != "[1 1 42 1]" {
					t.Errorf("counts %v, want [1 1 42 1]", got)
				}
			})
		})
	}
}

// TestApplyEncodingLargeSequences checks the cursor comparison at
// sequences beyond a Lua number's exact range (2^53) and at the edges: the
// next sequence applies, a repeat is skipped, one past the next is a gap,
// and sequence 0 (before any event) is skipped, never lowering a cursor.
func TestApplyEncodingLargeSequences(t *testing.T) {
	onBothRedis(t, func(t *testing.T, s *redischeckpoint.Store, c redis.UniversalClient, fenced func() *fencedCtx) {
		ctx := controlplane.WithFence(ctxFor(t), fenced().f)
		p, err := s.NewAtomicProjection("enc", func(e framework.Event, w *redischeckpoint.Writes) error {
			w.HIncrBy(w.Key("counts"), e.StreamID, 1)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		const big = uint64(1)<<60 + 1 // odd: a double would round it
		const stream = "process/big/x"
		if err := s.Advance(ctxFor(t), "enc", map[string]uint64{stream: big}); err != nil {
			t.Fatal(err)
		}
		ev := func(seq uint64) framework.Event {
			return framework.Event{StreamID: stream, Sequence: seq, EventID: fmt.Sprint(seq)}
		}
		if n, err := p.ApplyBatch(ctx, []framework.Event{ev(0), ev(big), ev(big + 1), ev(big + 1)}); err != nil || n != 4 {
			t.Fatalf("ApplyBatch = %d, %v", n, err)
		}
		if p.Skipped() != 3 {
			t.Errorf("skipped %d, want 3 (sequence 0, the cursor's own, the repeat)", p.Skipped())
		}
		n, err := p.ApplyBatch(ctx, []framework.Event{ev(big + 3)})
		var gap *framework.GapError
		if n != 0 || !errors.As(err, &gap) || gap.Cursor != big+1 {
			t.Fatalf("ApplyBatch past the next = %d, %v; want a gap after cursor %d", n, err, big+1)
		}
		cursors, err := s.Cursors(ctx, "enc", []string{stream})
		if err != nil {
			t.Fatal(err)
		}
		if cursors[stream] != big+1 {
			t.Errorf("cursor %d, want %d", cursors[stream], big+1)
		}
		if got, _ := c.HGet(ctx, p.Key("counts"), stream).Result(); got != "1" {
			t.Errorf("count %q, want 1", got)
		}
	})
}

// TestApplyEncodingCorruptCursorStopsAtItsStream stores a cursor that is
// not a sequence for the second stream of a batch (the script reads every
// stream's cursor up front): the events before the stream's first event
// are applied with their cursors, the error names the key and field,
// nothing of the stream or after it is applied, and once the cursor is
// repaired the same batch applies the rest once.
func TestApplyEncodingCorruptCursorStopsAtItsStream(t *testing.T) {
	onBothRedis(t, func(t *testing.T, s *redischeckpoint.Store, c redis.UniversalClient, fenced func() *fencedCtx) {
		ctx := controlplane.WithFence(ctxFor(t), fenced().f)
		p, err := s.NewAtomicProjection("enc", func(e framework.Event, w *redischeckpoint.Writes) error {
			w.HIncrBy(w.Key("counts"), e.StreamID, 1)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Advance(ctxFor(t), "enc", map[string]uint64{"process/bad/b": 1}); err != nil {
			t.Fatal(err)
		}
		cursorsKey := strings.TrimSuffix(p.Key(""), "rm:") + "cursors"
		if err := c.HSet(ctx, cursorsKey, "process/bad/b", "01").Err(); err != nil {
			t.Fatal(err)
		}
		events := []framework.Event{
			{StreamID: "process/bad/a", Sequence: 1, EventID: "a1"},
			{StreamID: "process/bad/a", Sequence: 2, EventID: "a2"},
			{StreamID: "process/bad/b", Sequence: 2, EventID: "b2"},
			{StreamID: "process/bad/c", Sequence: 1, EventID: "c1"},
		}
		// The script answers the corrupt cursor as an error reply, so
		// ApplyBatch reports none of the call's events as processed, though
		// the ones before it were applied with their cursors: a redelivery
		// skips them.
		n, err := p.ApplyBatch(ctx, events)
		ce, ok := errors.AsType[*redischeckpoint.CorruptCursorError](err)
		if n > 2 || !ok || ce.Field != "process/bad/b" || ce.Value != "01" || ce.Key != cursorsKey {
			t.Fatalf("ApplyBatch = %d, %v; want at most 2 and a corrupt cursor %s process/bad/b", n, err, cursorsKey)
		}
		got, _ := c.HMGet(ctx, cursorsKey, "process/bad/a", "process/bad/c").Result()
		if fmt.Sprint(got) != "[2 <nil>]" {
			t.Errorf("cursors of a and c = %v, want [2 <nil>]", got)
		}
		counts, _ := c.HGetAll(ctx, p.Key("counts")).Result()
		if len(counts) != 1 || counts["process/bad/a"] != "2" {
			t.Errorf("counts %v, want only process/bad/a = 2", counts)
		}
		if err := c.HSet(ctx, cursorsKey, "process/bad/b", "1").Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := p.ApplyBatch(ctx, events); err != nil || n != len(events) {
			t.Fatalf("ApplyBatch after the repair = %d, %v", n, err)
		}
		counts, _ = c.HGetAll(ctx, p.Key("counts")).Result()
		if fmt.Sprint(counts) != "map[process/bad/a:2 process/bad/b:1 process/bad/c:1]" {
			t.Errorf("counts after the repair %v: an event counted twice or not at all", counts)
		}
	})
}
