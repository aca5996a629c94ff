package redischeckpoint_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/projector-dev/projector/framework"
	rc "github.com/projector-dev/projector/redischeckpoint"
)

// applyCase is a write of event 2 that must apply: the checks run against
// the state before an earlier write of the same event, and the values
// Replace and ReplaceFields compute are exact.
type applyCase struct {
	name  string
	setup func(t *testing.T, h *applyHarness)
	write func(w *rc.Writes, h *applyHarness)
	check func(t *testing.T, h *applyHarness)
}

func applyCases() []applyCase {
	return []applyCase{
		{name: "DEL then SADD on a hash", setup: cmd("HSET", key("x"), "f", "1"),
			write: func(w *rc.Writes, h *applyHarness) { w.Del(w.Key("x")); w.SAdd(w.Key("x"), "m") },
			check: wantDescribed(key("x"), "set m")},
		{name: "SET then INCRBY on a hash", setup: cmd("HSET", key("x"), "f", "1"),
			write: func(w *rc.Writes, h *applyHarness) { w.Set(w.Key("x"), "5"); w.IncrBy(w.Key("x"), 2) },
			check: wantString(key("x"), "7")},
		{name: "HSET makes a non-integer field a counter", setup: cmd("HSET", key("x"), "f", "abc"),
			write: func(w *rc.Writes, h *applyHarness) { w.HSet(w.Key("x"), "f", "5"); w.HIncrBy(w.Key("x"), "f", 2) },
			check: wantField(key("x"), "f", "7")},
		{name: "HDEL then HINCRBY on a non-integer field", setup: cmd("HSET", key("x"), "f", "abc"),
			write: func(w *rc.Writes, h *applyHarness) { w.HDel(w.Key("x"), "f"); w.HIncrBy(w.Key("x"), "f", 3) },
			check: wantField(key("x"), "f", "3")},
		{name: "DEL then HINCRBY on a non-integer field", setup: cmd("HSET", key("x"), "f", "abc"),
			write: func(w *rc.Writes, h *applyHarness) { w.Del(w.Key("x")); w.HIncrBy(w.Key("x"), "f", 3) },
			check: wantField(key("x"), "f", "3")},
		{name: "DEL then INCRBY on a set", setup: cmd("SADD", key("x"), "m"),
			write: func(w *rc.Writes, h *applyHarness) { w.Del(w.Key("x")); w.IncrBy(w.Key("x"), 3) },
			check: wantString(key("x"), "3")},
		{name: "HINCRBY up to the edge and back", setup: cmd("HSET", key("x"), "f", "9223372036854775797"),
			write: func(w *rc.Writes, h *applyHarness) {
				w.HIncrBy(w.Key("x"), "f", 10)
				w.HIncrBy(w.Key("x"), "f", -10)
				w.HIncrBy(w.Key("x"), "f", 10)
			},
			check: wantField(key("x"), "f", maxInt64)},
		{name: "INCRBY down to the edge", setup: cmd("SET", key("x"), "-9223372036854775803"),
			write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), -5) },
			check: wantString(key("x"), minInt64)},
		{name: "SET and DEL take any type", setup: all(cmd("SADD", key("x"), "m"), cmd("RPUSH", key("y"), "a")),
			write: func(w *rc.Writes, h *applyHarness) { w.Set(w.Key("x"), "v"); w.Del(w.Key("y")) },
			check: all(wantString(key("x"), "v"), wantDescribed(key("y"), "none "))},
		// The difference to the replaced value leaves int64, the sum does
		// not: the old script sent the difference as a double.
		{name: "REPLACE by a difference outside int64", setup: all(cmd("HSET", key("x"), "q", "-1"), cmd("HSET", key("sum"), "q", "-10")),
			write: replaceX(9223372036854775807),
			check: all(wantField(key("x"), "q", maxInt64), wantField(key("sum"), "q", "9223372036854775798"), wantDescribed(key("cnt"), "none "))},
		// Above 2^53 a double is not exact.
		{name: "REPLACE exact above 2^53", setup: cmd("HSET", key("sum"), "q", "1"),
			write: replaceX(9007199254740993),
			check: all(wantField(key("sum"), "q", "9007199254740994"), wantField(key("cnt"), "q", "1"))},
		{name: "REPLACE_FIELDS exact above 2^53", setup: all(cmd("HSET", key("sum"), "a", "9007199254740993"), cmd("HSET", key("x"), "b", "9007199254740993")),
			write: replaceFieldsX(1, 9007199254740995),
			check: all(wantDescribed(key("sum"), "hash a=9007199254740994 b=2"), wantDescribed(key("cnt"), "hash a=1"))},
		{name: "REPLACE_FIELDS near both edges", setup: all(cmd("HSET", key("sum"), "a", "9223372036854775806", "b", "-9223372036854775806")),
			write: replaceFieldsX(1, -2),
			check: wantDescribed(key("sum"), "hash a="+maxInt64+" b="+minInt64)},
		// A MaLo's day: values, then a marker counted once, then a
		// correction of the values in the same event.
		{name: "REPLACE_FIELDS twice on one hash", setup: cmd("HSET", key("x"), "a", "4"),
			write: func(w *rc.Writes, h *applyHarness) {
				w.ReplaceFields(w.Key("x"), []string{"a", "b"}, []int64{10, 20}, []string{w.Key("sum")}, nil)
				w.ReplaceFields(w.Key("x"), []string{"day"}, []int64{1}, nil, []string{w.Key("cnt")})
				w.ReplaceFields(w.Key("x"), []string{"a"}, []int64{11}, []string{w.Key("sum")}, []string{w.Key("cnt")})
			},
			check: all(wantDescribed(key("x"), "hash a=11 b=20 day=1"), wantDescribed(key("sum"), "hash a=7 b=20"), wantDescribed(key("cnt"), "hash day=1"))},
		{name: "REPLACE then HINCRBY of its sum", setup: cmd("HSET", key("sum"), "q", "9223372036854775800"),
			write: func(w *rc.Writes, h *applyHarness) {
				replaceX(5)(w, h)
				w.HIncrBy(w.Key("sum"), "q", 2)
			},
			check: wantField(key("sum"), "q", maxInt64)},
		{name: "empty member lists write nothing", setup: cmd("HSET", key("x"), "f", "1"),
			write: func(w *rc.Writes, h *applyHarness) {
				w.SAdd(w.Key("x"))
				w.SRem(w.Key("y"))
				w.HDel(w.Key("x"))
				w.ReplaceFields(w.Key("x"), nil, nil, []string{w.Key("sum")}, nil)
			},
			check: all(wantDescribed(key("x"), "hash f=1"), wantDescribed(key("y"), "none "), wantDescribed(key("sum"), "none "))},
	}
}

// largeCases write thousands of members or fields: chunked inside the
// script, not one Lua unpack (which fails near 8000 values).
func largeCases() []applyCase {
	const n, nf = 9000, 5000 // ReplaceFields into one sum: 2 x 5000 values
	members := make([]string, n)
	values := make([]int64, nf)
	for i := range members {
		members[i] = "m" + strconv.Itoa(i)
	}
	for i := range values {
		values[i] = int64(i)
	}
	return []applyCase{
		{name: "SADD of 9000", write: func(w *rc.Writes, h *applyHarness) { w.SAdd(w.Key("x"), members...) },
			check: wantCard(key("x"), n)},
		{name: "SREM of 9000", setup: func(t *testing.T, h *applyHarness) {
			h.do(t, h.expand(append([]any{"SADD", key("x"), "keep"}, anys(members)...))...)
		},
			write: func(w *rc.Writes, h *applyHarness) { w.SRem(w.Key("x"), members...) },
			check: wantDescribed(key("x"), "set keep")},
		{name: "HDEL of 9000", setup: func(t *testing.T, h *applyHarness) {
			args := []any{"HSET", key("x"), "keep", "1"}
			for _, m := range members {
				args = append(args, m, "1")
			}
			h.do(t, h.expand(args)...)
		}, write: func(w *rc.Writes, h *applyHarness) { w.HDel(w.Key("x"), members...) },
			check: wantDescribed(key("x"), "hash keep=1")},
		{name: "REPLACE_FIELDS of 5000", write: func(w *rc.Writes, h *applyHarness) {
			w.ReplaceFields(w.Key("x"), members[:nf], values, []string{w.Key("sum")}, nil)
		}, check: all(wantCard(key("x"), nf), wantField(key("sum"), "m4999", "4999"))},
	}
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func wantCard(k []string, n int64) func(t *testing.T, h *applyHarness) {
	return func(t *testing.T, h *applyHarness) {
		t.Helper()
		typ, _ := h.admin.Type(h.ctx, h.k(k...)).Result()
		var got int64
		switch typ {
		case "set":
			got, _ = h.admin.SCard(h.ctx, h.k(k...)).Result()
		case "hash":
			got, _ = h.admin.HLen(h.ctx, h.k(k...)).Result()
		}
		if got != n {
			t.Errorf("%v (%s) has %d members, want %d", k, typ, got, n)
		}
	}
}

// runApplyCase applies the batch, checks every event counted once and the
// case's state, then applies it again and checks nothing changed.
func runApplyCase(t *testing.T, h *applyHarness, tc applyCase) {
	t.Helper()
	h.write = tc.write
	if tc.setup != nil {
		tc.setup(t, h)
	}
	if n, err := h.p.ApplyBatch(h.ctx, h.events); n != 3 || err != nil {
		t.Fatalf("ApplyBatch = %d, %v; want 3 applied", n, err)
	}
	for _, k := range []string{"e1", "e3"} {
		if v := h.hget(t, h.k(k), "n"); v != "1" {
			t.Errorf("%s = %q, want 1", k, v)
		}
	}
	if c := h.cursors(t); !slices.Equal(c, []uint64{1, 1, 1}) {
		t.Errorf("cursors %v, want [1 1 1]", c)
	}
	tc.check(t, h)
	before := h.snapshot(t)
	if n, err := h.p.ApplyBatch(h.ctx, h.events); n != 3 || err != nil {
		t.Fatalf("second ApplyBatch = %d, %v", n, err)
	}
	if got := h.snapshot(t); !maps.Equal(got, before) {
		t.Errorf("a redelivered batch changed the read model:\n  %v\nwas\n  %v", got, before)
	}
}

func TestApplyChecksAgainstTheEventsOwnWrites(t *testing.T) {
	for _, tc := range applyCases() {
		t.Run(tc.name, func(t *testing.T) { runApplyCase(t, realHarness(t), tc) })
	}
}

func TestApplyChunksLargeWrites(t *testing.T) {
	for _, tc := range largeCases() {
		t.Run(tc.name, func(t *testing.T) { runApplyCase(t, realHarness(t), tc) })
	}
}

func TestApplyOnMiniredis(t *testing.T) {
	for _, tc := range append(applyCases(), largeCases()...) {
		t.Run(tc.name, func(t *testing.T) { runApplyCase(t, miniHarness(t), tc) })
	}
}

// TestApplySplitsLargeBatches sends a batch in several scripts (by
// arguments and by events); a refusal in a later script counts the events
// of the earlier ones.
func TestApplySplitsLargeBatches(t *testing.T) {
	h := realHarness(t)
	members := make([]string, 9000)
	for i := range members {
		members[i] = "m" + strconv.Itoa(i)
	}
	p, err := h.store.NewAtomicProjection("big", func(e framework.Event, w *rc.Writes) error {
		switch e.Type {
		case "large":
			w.SAdd(w.Key("set", e.StreamID), members...) // 30 x 9000 arguments: more than one script
		case "bad":
			w.HIncrBy(w.Key("str"), "f", 1)
		default:
			w.HIncrBy(w.Key("n"), "n", 1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var events []framework.Event
	for i := range 30 {
		events = append(events, framework.Event{StreamID: fmt.Sprintf("process/t/l%02d", i), Sequence: 1, Type: "large"})
	}
	for i := range 600 {
		events = append(events, framework.Event{StreamID: fmt.Sprintf("process/t/s%03d", i), Sequence: 1})
	}
	events[30+550].Type = "bad"
	h.do(t, "SET", p.Key("str"), "not a hash")
	ctx := ctxFor(t) // unfenced: the harness's fence is projection p's
	n, err := p.ApplyBatch(ctx, events)
	if n != 30+550 || !errors.Is(err, rc.ErrWriteRefused) {
		t.Fatalf("ApplyBatch = %d, %v; want %d and ErrWriteRefused", n, err, 30+550)
	}
	if got, _ := h.admin.HGet(h.ctx, p.Key("n"), "n").Result(); got != "550" {
		t.Errorf("counted %s events, want 550", got)
	}
	h.do(t, "DEL", p.Key("str"))
	if n, err := p.ApplyBatch(ctx, events); n != len(events) || err != nil {
		t.Fatalf("ApplyBatch after the fix = %d, %v", n, err)
	}
	if got, _ := h.admin.HGet(h.ctx, p.Key("n"), "n").Result(); got != "599" {
		t.Errorf("counted %s events, want 599", got)
	}
	if got, _ := h.admin.SCard(h.ctx, p.Key("set", "process/t/l29")).Result(); got != 9000 {
		t.Errorf("the last large event added %d members, want 9000", got)
	}
}
