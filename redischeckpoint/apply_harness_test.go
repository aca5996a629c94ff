package redischeckpoint_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// The apply tests run batches of three events on three streams: event 1
// counts into rm:e1, event 2 does the writes under test between a write
// before them (rm:e2:before) and one after (rm:e2:after), event 3 counts
// into rm:e3. When event 2 fails, event 1 must be applied once with its
// cursor, nothing of event 2 may be in Redis, and event 3 must not be
// applied; after the cause is fixed the same batch applies 2 and 3 once
// and skips 1.

const (
	maxInt64 = "9223372036854775807"
	minInt64 = "-9223372036854775808"
)

var threeStreams = []string{"process/t/one", "process/t/two", "process/t/three"}

// applyHarness is one test's projection "p", the admin client that
// prepares and inspects Redis, and what event 2 writes.
type applyHarness struct {
	ctx    context.Context // carries a fence when the test runs fenced
	admin  redis.UniversalClient
	ns     string
	store  *redischeckpoint.Store
	p      *redischeckpoint.AtomicProjection
	events []framework.Event
	// write is event 2's writes under test.
	write func(w *redischeckpoint.Writes, h *applyHarness)
	// size is a knob for the limit cases: the fix lowers it.
	size int
}

type harnessOptions struct {
	admin redis.UniversalClient // prepares and inspects; default: the store's client
	store redis.UniversalClient // the Store's connection
	ns    string
	// fenced acquires a fence with the admin store (untracked by the
	// test's Store when it connects as another user) or, with
	// trackFence, with the test's Store.
	fenced     bool
	trackFence bool
}

func newApplyHarness(t *testing.T, o harnessOptions) *applyHarness {
	t.Helper()
	if o.admin == nil {
		o.admin = o.store
	}
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: o.store, Namespace: o.ns})
	if err != nil {
		t.Fatal(err)
	}
	h := &applyHarness{ctx: ctxFor(t), admin: o.admin, ns: o.ns, store: s}
	h.p, err = s.NewAtomicProjection("p", func(e framework.Event, w *redischeckpoint.Writes) error {
		switch e.Type {
		case "one":
			w.HIncrBy(w.Key("e1"), "n", 1)
		case "two":
			w.HIncrBy(w.Key("e2", "before"), "n", 1)
			if h.write != nil {
				h.write(w, h)
			}
			w.HSet(w.Key("e2", "after"), "f", "v")
		case "three":
			w.HIncrBy(w.Key("e3"), "n", 1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.fenced {
		fencer := s
		if !o.trackFence {
			fencer, err = redischeckpoint.New(redischeckpoint.Config{Client: o.admin, Namespace: o.ns})
			if err != nil {
				t.Fatal(err)
			}
		}
		f, err := fencer.AcquireFence(h.ctx, "p", 0)
		if err != nil {
			t.Fatal(err)
		}
		h.ctx = controlplane.WithFence(h.ctx, f)
	}
	for i, typ := range []string{"one", "two", "three"} {
		h.events = append(h.events, framework.Event{StreamID: threeStreams[i], Sequence: 1, EventID: typ + "#1", Type: typ})
	}
	return h
}

// realHarness connects to the test Redis as the default user, fenced with
// a fence the Store tracks (so refusals must keep its write serial right).
func realHarness(t *testing.T) *applyHarness {
	t.Helper()
	env := testenv.Redis(t)
	return newApplyHarness(t, harnessOptions{store: env.Client, ns: env.Prefix(t), fenced: true, trackFence: true})
}

// miniHarness runs on an in-process miniredis, like the embedded demo.
func miniHarness(t *testing.T) *applyHarness {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return newApplyHarness(t, harnessOptions{store: c, ns: "mini", fenced: true, trackFence: true})
}

// k is the read-model key of parts.
func (h *applyHarness) k(parts ...string) string { return h.p.Key(parts...) }

func (h *applyHarness) do(t *testing.T, args ...any) {
	t.Helper()
	if err := h.admin.Do(h.ctx, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("%v: %v", args, err)
	}
}

// snapshot describes every read-model key of the projection.
func (h *applyHarness) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	pattern := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(h.k("")) + "*"
	iter := h.admin.Scan(h.ctx, 0, pattern, 1000).Iterator()
	for iter.Next(h.ctx) {
		key := iter.Val()
		out[strings.TrimPrefix(key, h.k(""))] = h.describe(t, key)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *applyHarness) describe(t *testing.T, key string) string {
	t.Helper()
	typ, err := h.admin.Type(h.ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	switch typ {
	case "hash":
		m, _ := h.admin.HGetAll(h.ctx, key).Result()
		for f, v := range m {
			items = append(items, f+"="+v)
		}
	case "set":
		items, _ = h.admin.SMembers(h.ctx, key).Result()
	case "string":
		v, _ := h.admin.Get(h.ctx, key).Result()
		items = []string{v}
	case "list":
		items, _ = h.admin.LRange(h.ctx, key, 0, -1).Result()
	}
	slices.Sort(items)
	if len(items) > 8 {
		items = append(items[:8], fmt.Sprintf("... %d in all", len(items)))
	}
	return typ + " " + strings.Join(items, " ")
}

// hget reads a field, "" when absent.
func (h *applyHarness) hget(t *testing.T, key, field string) string {
	t.Helper()
	v, err := h.admin.HGet(h.ctx, key, field).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return v
}

func (h *applyHarness) cursors(t *testing.T) []uint64 {
	t.Helper()
	var out []uint64
	for _, s := range threeStreams {
		seq, err := h.p.LastSequence(context.WithoutCancel(h.ctx), s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, seq)
	}
	return out
}

// wantWriteError is the error event 2 must fail with; key parts are
// relative to the read model.
type wantWriteError struct {
	kind  error
	op    string
	key   []string
	field string
	code  string
}

// checkWriteError checks err against want for event 2 of the batch.
func (h *applyHarness) checkWriteError(t *testing.T, err error, want wantWriteError) {
	t.Helper()
	if !errors.Is(err, want.kind) {
		t.Errorf("error = %v, want %v", err, want.kind)
		return
	}
	we, ok := errors.AsType[*redischeckpoint.WriteError](err)
	if !ok {
		t.Errorf("error %v is not a *WriteError", err)
		return
	}
	e := h.events[1]
	if we.StreamID != e.StreamID || we.Sequence != e.Sequence || we.EventID != e.EventID {
		t.Errorf("error names stream %s sequence %d event %s, want %s %d %s", we.StreamID, we.Sequence, we.EventID, e.StreamID, e.Sequence, e.EventID)
	}
	if we.Op != want.op || we.Key != h.k(want.key...) || we.Field != want.field || we.Code != want.code {
		t.Errorf("error names op %s key %s field %q code %s, want %s %s %q %s",
			we.Op, we.Key, we.Field, we.Code, want.op, h.k(want.key...), want.field, want.code)
	}
	msg := err.Error()
	for _, part := range []string{e.StreamID, e.EventID, want.op, h.k(want.key...), want.code} {
		if !strings.Contains(msg, part) {
			t.Errorf("message %q does not name %q", msg, part)
		}
	}
	if we.Reason == "" {
		t.Errorf("error %q gives no reason", msg)
	}
}

// failCase is a write of event 2 that must fail, how to fix its cause, and
// what event 2 must have done once applied after the fix.
type failCase struct {
	name  string
	setup func(t *testing.T, h *applyHarness)
	write func(w *redischeckpoint.Writes, h *applyHarness)
	want  wantWriteError
	fix   func(t *testing.T, h *applyHarness)
	check func(t *testing.T, h *applyHarness)
}

// runFailCase applies the batch, checks that exactly event 1 was applied,
// fixes the cause, applies the same batch again, and checks that every
// event counted once.
func runFailCase(t *testing.T, h *applyHarness, tc failCase) {
	t.Helper()
	h.write = tc.write
	if tc.setup != nil {
		tc.setup(t, h)
	}
	before := h.snapshot(t)
	n, err := h.p.ApplyBatch(h.ctx, h.events)
	if n != 1 {
		t.Errorf("ApplyBatch = %d, %v; want 1 applied and event 2 refused", n, err)
	}
	h.checkWriteError(t, err, tc.want)
	want := maps.Clone(before)
	want["e1"] = "hash n=1"
	if got := h.snapshot(t); !maps.Equal(got, want) {
		t.Errorf("after the refused batch the read model is\n  %v\nwant (event 1 only)\n  %v", got, want)
	}
	if c := h.cursors(t); !slices.Equal(c, []uint64{1, 0, 0}) {
		t.Errorf("cursors after the refused batch %v, want [1 0 0]", c)
	}

	tc.fix(t, h)
	skipped := h.p.Skipped()
	if n, err := h.p.ApplyBatch(h.ctx, h.events); n != 3 || err != nil {
		t.Fatalf("ApplyBatch after the fix = %d, %v; want 3 processed", n, err)
	}
	if got := h.p.Skipped() - skipped; got != 1 {
		t.Errorf("the retry skipped %d events, want 1 (event 1)", got)
	}
	for _, kf := range [][2]string{{"e1", "n"}, {"e3", "n"}} {
		if v := h.hget(t, h.k(kf[0]), kf[1]); v != "1" {
			t.Errorf("%s = %q after the retry, want 1: counted twice or not at all", kf[0], v)
		}
	}
	if v := h.hget(t, h.k("e2", "before"), "n"); v != "1" {
		t.Errorf("event 2's first write counted %q, want 1", v)
	}
	if v := h.hget(t, h.k("e2", "after"), "f"); v != "v" {
		t.Errorf("event 2's last write = %q, want v", v)
	}
	if c := h.cursors(t); !slices.Equal(c, []uint64{1, 1, 1}) {
		t.Errorf("cursors after the retry %v, want [1 1 1]", c)
	}
	tc.check(t, h)

	// Delivered once more: everything is skipped.
	again := h.snapshot(t)
	if n, err := h.p.ApplyBatch(h.ctx, h.events); n != 3 || err != nil {
		t.Fatalf("third ApplyBatch = %d, %v", n, err)
	}
	if got := h.snapshot(t); !maps.Equal(got, again) {
		t.Errorf("a redelivered batch changed the read model:\n  %v\nwas\n  %v", got, again)
	}
}

// Helpers for cases.

func delKey(parts ...string) func(t *testing.T, h *applyHarness) {
	return func(t *testing.T, h *applyHarness) { t.Helper(); h.do(t, "DEL", h.k(parts...)) }
}

func wantField(key []string, field, value string) func(t *testing.T, h *applyHarness) {
	return func(t *testing.T, h *applyHarness) {
		t.Helper()
		if v := h.hget(t, h.k(key...), field); v != value {
			t.Errorf("%v field %s = %q, want %q", key, field, v, value)
		}
	}
}

func wantString(key []string, value string) func(t *testing.T, h *applyHarness) {
	return func(t *testing.T, h *applyHarness) {
		t.Helper()
		v, err := h.admin.Get(h.ctx, h.k(key...)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if v != value {
			t.Errorf("%v = %q, want %q", key, v, value)
		}
	}
}

func wantDescribed(key []string, desc string) func(t *testing.T, h *applyHarness) {
	return func(t *testing.T, h *applyHarness) {
		t.Helper()
		if got := h.describe(t, h.k(key...)); got != desc {
			t.Errorf("%v is %q, want %q", key, got, desc)
		}
	}
}

func all(checks ...func(t *testing.T, h *applyHarness)) func(t *testing.T, h *applyHarness) {
	return func(t *testing.T, h *applyHarness) {
		t.Helper()
		for _, c := range checks {
			c(t, h)
		}
	}
}

func cmd(args ...any) func(t *testing.T, h *applyHarness) {
	return func(t *testing.T, h *applyHarness) { t.Helper(); h.do(t, h.expand(args)...) }
}

// expand turns []string key parts in args into keys.
func (h *applyHarness) expand(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if parts, ok := a.([]string); ok {
			out[i] = h.k(parts...)
		} else {
			out[i] = a
		}
	}
	return out
}

func key(parts ...string) []string { return parts }
