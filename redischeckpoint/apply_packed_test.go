package redischeckpoint_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// packedRig applies one event at a time whose writes a test passes in.
type packedRig struct {
	ctx    context.Context
	client redis.UniversalClient
	p      *redischeckpoint.AtomicProjection
	writes func(w *redischeckpoint.Writes)
	seq    uint64
}

func (r *packedRig) apply(t *testing.T, writes func(w *redischeckpoint.Writes)) error {
	t.Helper()
	r.writes = writes
	r.seq++
	_, err := r.p.ApplyBatch(r.ctx, []framework.Event{{StreamID: "process/t/packed", Sequence: r.seq, EventID: "e" + strconv.FormatUint(r.seq, 10), Type: "x"}})
	if err != nil {
		r.seq--
	}
	return err
}

func (r *packedRig) sums(t *testing.T, key string, n int) []int64 {
	t.Helper()
	s, err := r.client.Get(r.ctx, r.p.Key(key)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	out := make([]int64, n)
	for i := range min(n, len(s)/8) {
		out[i] = int64(binary.BigEndian.Uint64([]byte(s[8*i : 8*i+8])))
	}
	return out
}

func packedRigs(t *testing.T) map[string]func(t *testing.T) *packedRig {
	newRig := func(t *testing.T, client redis.UniversalClient, ns string) *packedRig {
		s, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		r := &packedRig{ctx: ctxFor(t), client: client}
		r.p, err = s.NewAtomicProjection("p", func(e framework.Event, w *redischeckpoint.Writes) error {
			r.writes(w)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	return map[string]func(t *testing.T) *packedRig{
		"redis": func(t *testing.T) *packedRig {
			env := testenv.Redis(t)
			return newRig(t, env.Client, env.Prefix(t))
		},
		"miniredis": func(t *testing.T) *packedRig {
			m := miniredis.RunT(t)
			c := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return newRig(t, c, "mini")
		},
	}
}

// TestReplacePacked replaces segments and checks the sums, flag sums and
// counts: a first delivery adds, a replacement adds the difference, a
// value wider than the string's width rewrites it without losing the
// other segments, a move takes the old values out of one target and puts
// the new ones into the other.
func TestReplacePacked(t *testing.T) {
	for name, rig := range packedRigs(t) {
		t.Run(name, func(t *testing.T) {
			r := rig(t)
			target := func(g string, first int) redischeckpoint.PackedTarget {
				return redischeckpoint.PackedTarget{Sums: r.p.Key(g, "sum"), FlagSums: r.p.Key(g, "flags"),
					Count: redischeckpoint.HashField{Key: r.p.Key(g, "count"), Field: "d" + strconv.Itoa(first)}, FirstSlot: first, Slots: 20}
			}
			put := func(seg int, vals []int64, flags []bool, from, to redischeckpoint.PackedTarget) {
				t.Helper()
				if err := r.apply(t, func(w *redischeckpoint.Writes) { w.ReplacePacked(w.Key("days"), seg, vals, flags, from, to) }); err != nil {
					t.Fatal(err)
				}
			}
			a0, a1 := target("a", 0), target("a", 4)
			put(0, []int64{1, 2, 3, 4}, []bool{false, true, false, false}, a0, a0)
			put(1, []int64{10, -20, 30, 40}, []bool{true, true, false, false}, a1, a1)
			put(0, []int64{5, 2, 3, 1}, []bool{false, false, false, true}, a0, a0) // a correction
			want := []int64{5, 2, 3, 1, 10, -20, 30, 40}
			if got := r.sums(t, "a:sum", 8); !equal(got, want) {
				t.Errorf("sums %v, want %v", got, want)
			}
			if got := r.sums(t, "a:flags", 8); !equal(got, []int64{0, 0, 0, 1, 1, 1, 0, 0}) {
				t.Errorf("flag sums %v", got)
			}
			// Wider: 40,000 needs 3 bytes; segment 0 must survive.
			put(1, []int64{40_000, -20, 30, 40}, []bool{true, true, false, false}, a1, a1)
			if got := r.sums(t, "a:sum", 8); !equal(got, []int64{5, 2, 3, 1, 40_000, -20, 30, 40}) {
				t.Errorf("after widening: sums %v", got)
			}
			put(0, []int64{6, 2, 3, 1}, []bool{false, false, false, true}, a0, a0)
			if got := r.sums(t, "a:sum", 8); !equal(got, []int64{6, 2, 3, 1, 40_000, -20, 30, 40}) {
				t.Errorf("after widening and a correction: sums %v", got)
			}
			// Move segment 1 from group a to group b, with new values.
			b1 := target("b", 4)
			put(1, []int64{7, 7, 7, 7}, []bool{false, false, false, false}, a1, b1)
			if got := r.sums(t, "a:sum", 8); !equal(got, []int64{6, 2, 3, 1, 0, 0, 0, 0}) {
				t.Errorf("after the move, a: %v", got)
			}
			if got := r.sums(t, "b:sum", 8); !equal(got, []int64{0, 0, 0, 0, 7, 7, 7, 7}) {
				t.Errorf("after the move, b: %v", got)
			}
			if got := r.sums(t, "a:flags", 8); !equal(got, []int64{0, 0, 0, 1, 0, 0, 0, 0}) {
				t.Errorf("after the move, a's flags: %v", got)
			}
			counts := func(g string) map[string]string {
				m, _ := r.client.HGetAll(r.ctx, r.p.Key(g, "count")).Result()
				return m
			}
			if a, b := counts("a"), counts("b"); a["d0"] != "1" || a["d4"] != "0" || b["d4"] != "1" {
				t.Errorf("counts a %v, b %v", a, b)
			}
			// The sums strings have their whole length (20 slots).
			if n, _ := r.client.StrLen(r.ctx, r.p.Key("b", "sum")).Result(); n != 160 {
				t.Errorf("a new sums string of %d bytes, want 160", n)
			}
		})
	}
}

// TestReplacePackedRefusals: a sum that would leave ±2^53, a packed key of
// another type and a closed guard refuse the event with nothing written.
func TestReplacePackedRefusals(t *testing.T) {
	for name, rig := range packedRigs(t) {
		t.Run(name, func(t *testing.T) {
			r := rig(t)
			tg := redischeckpoint.PackedTarget{Sums: r.p.Key("sum"), FirstSlot: 0, Slots: 2}
			near := make([]byte, 16)
			binary.BigEndian.PutUint64(near, uint64(redischeckpoint.MaxPackedSum-1))
			if err := r.client.Set(r.ctx, r.p.Key("sum"), string(near), 0).Err(); err != nil {
				t.Fatal(err)
			}
			refused := func(code string, writes func(w *redischeckpoint.Writes)) {
				t.Helper()
				err := r.apply(t, writes)
				we, ok := errors.AsType[*redischeckpoint.WriteError](err)
				if !ok || !errors.Is(err, redischeckpoint.ErrWriteRefused) || we.Code != code {
					t.Fatalf("%v, want refused with %s", err, code)
				}
				if n, _ := r.client.Exists(r.ctx, r.p.Key("days"), r.p.Key("after")).Result(); n != 0 {
					t.Errorf("a refused event wrote %d keys", n)
				}
			}
			refused("OVERFLOW", func(w *redischeckpoint.Writes) {
				w.ReplacePacked(w.Key("days"), 0, []int64{5, 0}, []bool{false, false}, tg, tg)
				w.HSet(w.Key("after"), "f", "v")
			})
			r.client.HSet(r.ctx, r.p.Key("hash"), "f", "v")
			refused("WRONGTYPE", func(w *redischeckpoint.Writes) {
				w.ReplacePacked(w.Key("hash"), 0, []int64{1}, []bool{false}, redischeckpoint.PackedTarget{}, redischeckpoint.PackedTarget{})
				w.HSet(w.Key("after"), "f", "v")
			})
			r.client.Set(r.ctx, r.p.Key("closed"), "1", 0)
			refused("CLOSED", func(w *redischeckpoint.Writes) {
				w.RefuseIfExists(w.Key("closed"), "CLOSED", "closed")
				w.HSet(w.Key("after"), "f", "v")
			})
			r.client.Del(r.ctx, r.p.Key("closed"))
			if err := r.apply(t, func(w *redischeckpoint.Writes) { w.RefuseIfExists(w.Key("closed"), "CLOSED", "closed") }); err != nil {
				t.Errorf("with the guard key absent: %v", err)
			}
		})
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
