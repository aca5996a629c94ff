package checkpointtest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/projector-dev/projector/framework"
)

// NewStore returns an empty store that only the calling test uses.
type NewStore func(t *testing.T) framework.ProjectionCheckpointStore

// Run runs every conformance case against stores made by newStore, each in
// its own parallel subtest.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s framework.ProjectionCheckpointStore)
	}{
		{"LoadMissingIsEmpty", testLoadMissing},
		{"SaveLoadRoundTrip", testSaveLoad},
		{"SaveReplaces", testSaveReplaces},
		{"AdvanceOnlyRaises", testAdvanceOnlyRaises},
		{"AdvanceCreates", testAdvanceCreates},
		{"NamesAreIndependent", testNamesIndependent},
		{"DeleteAndNames", testDeleteAndNames},
		{"JSONRoundTripOfLoaded", testJSONRoundTrip},
		{"UnusualStreamIDs", testUnusualStreamIDs},
		{"LargeAdvance", testLargeAdvance},
		{"ConcurrentAdvancesNeverRegress", testConcurrentAdvances},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newStore(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func checkpoint(cursors map[string]uint64) *framework.GlobalProjectionCheckpoint {
	cp := framework.NewGlobalProjectionCheckpoint()
	for id, seq := range cursors {
		cp.Advance(id, seq)
	}
	return cp
}

func cursorsOf(cp *framework.GlobalProjectionCheckpoint) map[string]uint64 {
	out := map[string]uint64{}
	for id, seq := range cp.All() {
		out[id] = seq
	}
	return out
}

func load(t *testing.T, s framework.ProjectionCheckpointStore, name string) map[string]uint64 {
	t.Helper()
	cp, err := s.Load(ctxFor(t), name)
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	if cp == nil {
		t.Fatalf("Load(%s) returned a nil checkpoint", name)
	}
	return cursorsOf(cp)
}

func testLoadMissing(t *testing.T, s framework.ProjectionCheckpointStore) {
	cp, err := s.Load(ctxFor(t), "never-saved")
	if err != nil {
		t.Fatalf("Load of a missing checkpoint: %v, want an empty checkpoint", err)
	}
	if cp == nil || cp.Len() != 0 {
		t.Fatalf("Load of a missing checkpoint = %v, want empty", cp)
	}
	if got := cp.Cursor("process/t1/unknown"); got != 0 {
		t.Errorf("cursor of an unknown stream = %d, want 0", got)
	}
}

func testSaveLoad(t *testing.T, s framework.ProjectionCheckpointStore) {
	want := map[string]uint64{"process/t1/a": 2, "process/t1/b": 3, "process/t2/c": 1}
	if err := s.Save(ctxFor(t), "p", checkpoint(want)); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if got := load(t, s, "p"); !maps.Equal(got, want) {
		t.Errorf("Load = %v, want %v", got, want)
	}
}

func testSaveReplaces(t *testing.T, s framework.ProjectionCheckpointStore) {
	ctx := ctxFor(t)
	if err := s.Save(ctx, "p", checkpoint(map[string]uint64{"process/t1/a": 5, "process/t1/b": 1})); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"process/t1/a": 2, "process/t1/c": 7}
	if err := s.Save(ctx, "p", checkpoint(want)); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s, "p"); !maps.Equal(got, want) {
		t.Errorf("after a second Save, Load = %v, want exactly %v", got, want)
	}
}

func testAdvanceOnlyRaises(t *testing.T, s framework.ProjectionCheckpointStore) {
	ctx := ctxFor(t)
	if err := s.Save(ctx, "p", checkpoint(map[string]uint64{"process/t1/a": 3, "process/t1/b": 5, "process/t1/keep": 9})); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(ctx, "p", map[string]uint64{"process/t1/a": 4, "process/t1/b": 2, "process/t1/new": 1}); err != nil {
		t.Fatalf("Advance: %v", err)
	}
	want := map[string]uint64{"process/t1/a": 4, "process/t1/b": 5, "process/t1/keep": 9, "process/t1/new": 1}
	if got := load(t, s, "p"); !maps.Equal(got, want) {
		t.Errorf("Load = %v, want %v (b must not move back, keep must stay)", got, want)
	}
	if err := s.Advance(ctx, "p", nil); err != nil {
		t.Errorf("Advance with no cursors: %v", err)
	}
}

func testAdvanceCreates(t *testing.T, s framework.ProjectionCheckpointStore) {
	want := map[string]uint64{"process/t1/a": 1}
	if err := s.Advance(ctxFor(t), "fresh", want); err != nil {
		t.Fatalf("Advance on a missing checkpoint: %v", err)
	}
	if got := load(t, s, "fresh"); !maps.Equal(got, want) {
		t.Errorf("Load = %v, want %v", got, want)
	}
}

func testNamesIndependent(t *testing.T, s framework.ProjectionCheckpointStore) {
	ctx := ctxFor(t)
	if err := s.Advance(ctx, "one", map[string]uint64{"process/t1/a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(ctx, "two", map[string]uint64{"process/t1/a": 7}); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s, "one")["process/t1/a"]; got != 1 {
		t.Errorf("checkpoint one sees cursor %d, want 1", got)
	}
	if err := s.Delete(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s, "one")["process/t1/a"]; got != 1 {
		t.Errorf("deleting checkpoint two changed one: cursor %d, want 1", got)
	}
}

func testDeleteAndNames(t *testing.T, s framework.ProjectionCheckpointStore) {
	ctx := ctxFor(t)
	for _, name := range []string{"billing", "audit", "zeta"} {
		if err := s.Save(ctx, name, checkpoint(map[string]uint64{"process/t1/a": 1})); err != nil {
			t.Fatal(err)
		}
	}
	names, err := s.Names(ctx)
	if err != nil {
		t.Fatalf("Names: %v", err)
	}
	if !slices.Equal(names, []string{"audit", "billing", "zeta"}) {
		t.Errorf("Names = %v, want [audit billing zeta]", names)
	}
	if err := s.Delete(ctx, "billing"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(ctx, "billing"); err != nil {
		t.Errorf("Delete of a missing checkpoint: %v, want nil", err)
	}
	if got := load(t, s, "billing"); len(got) != 0 {
		t.Errorf("Load after Delete = %v, want empty", got)
	}
	names, err = s.Names(ctx)
	if err != nil || !slices.Equal(names, []string{"audit", "zeta"}) {
		t.Errorf("Names after Delete = %v, %v; want [audit zeta]", names, err)
	}
}

func testJSONRoundTrip(t *testing.T, s framework.ProjectionCheckpointStore) {
	want := map[string]uint64{"process/t1/a": 1 << 40, "process/t1/ü": 2}
	if err := s.Save(ctxFor(t), "p", checkpoint(want)); err != nil {
		t.Fatal(err)
	}
	cp, err := s.Load(ctxFor(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(cp)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var back framework.GlobalProjectionCheckpoint
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("Unmarshal(%s): %v", raw, err)
	}
	if got := cursorsOf(&back); !maps.Equal(got, want) {
		t.Errorf("JSON round trip = %v, want %v (json %s)", got, want, raw)
	}
}

func testUnusualStreamIDs(t *testing.T, s framework.ProjectionCheckpointStore) {
	want := map[string]uint64{
		"process/t1/{billing}":   1,
		"process/t1/a b:c*?[x]":  2,
		"process/t1/Zählpunkt/ä": 3,
		"process/t1/x\"y'z\\":    4,
	}
	if err := s.Advance(ctxFor(t), "odd {name}:*", want); err != nil {
		t.Fatalf("Advance: %v", err)
	}
	if got := load(t, s, "odd {name}:*"); !maps.Equal(got, want) {
		t.Errorf("Load = %v, want %v", got, want)
	}
}

func testLargeAdvance(t *testing.T, s framework.ProjectionCheckpointStore) {
	const n = 20_000 // above the ~8000-value limit of Lua unpack
	want := make(map[string]uint64, n)
	for i := range n {
		want[fmt.Sprintf("process/t1/%06d", i)] = uint64(i%97 + 1)
	}
	if err := s.Advance(ctxFor(t), "large", want); err != nil {
		t.Fatalf("Advance of %d cursors: %v", n, err)
	}
	if got := load(t, s, "large"); !maps.Equal(got, want) {
		t.Errorf("Load returned %d cursors, want the %d advanced", len(got), n)
	}
}

func testConcurrentAdvances(t *testing.T, s framework.ProjectionCheckpointStore) {
	ctx := ctxFor(t)
	const writers, rounds = 4, 50
	streams := []string{"process/t1/a", "process/t1/b", "process/t1/c"}
	var mu sync.Mutex
	highest := map[string]uint64{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range rounds {
				moved := map[string]uint64{}
				for _, id := range streams {
					if rng.IntN(2) == 0 {
						moved[id] = uint64(rng.IntN(1000) + 1)
					}
				}
				if err := s.Advance(ctx, "race", moved); err != nil {
					t.Errorf("Advance: %v", err)
					return
				}
				mu.Lock()
				for id, seq := range moved {
					highest[id] = max(highest[id], seq)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got := load(t, s, "race"); !maps.Equal(got, highest) {
		t.Errorf("after concurrent advances Load = %v, want the highest of each %v", got, highest)
	}
}
