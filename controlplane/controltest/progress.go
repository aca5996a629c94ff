package controltest

import (
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
)

var progressCases = []testCase{
	{"UnrecordedAtFirst", testProgressUnrecorded},
	{"AdvancePartitionRaisesCursorsHeadsAndProgress", testAdvancePartition},
	{"CursorsLookUpManyStreams", testCursorsMany},
	{"SaveDropsHeads", testSaveDropsHeads},
	{"UntrackedStateIsReported", testUntracked},
	{"DeleteKeepsEpochFencesAndProgress", testDeleteKeeps},
}

func testProgressUnrecorded(t *testing.T, s Store) {
	if pr := progress(t, s, proj, 0); pr != (controlplane.PartitionProgress{}) {
		t.Errorf("progress of a new projection = %+v, want the zero value (not recorded, not untracked)", pr)
	}
	heads, err := s.Heads(ctxFor(t), proj, []string{"process/t/a"})
	if err != nil || len(heads) != 0 {
		t.Errorf("Heads of a new projection = %+v, %v; want none", heads, err)
	}
}

func testAdvancePartition(t *testing.T, s Store) {
	ctx := ctxFor(t)
	_, fctx := acquire(t, s, proj, 0)
	first := []controlplane.StreamHead{
		{StreamID: "process/t/a", Sequence: 3, EventID: "ev-a3", Position: &framework.Position{Partition: 0, Offset: 7}},
		{StreamID: "process/t/b", Sequence: 5, EventID: "ev-b5"},
	}
	must(t, s.AdvancePartition(fctx, proj, 0, first, 10))
	if pr := progress(t, s, proj, 0); !pr.Recorded || pr.Next != 10 || pr.Untracked {
		t.Errorf("progress = %+v, want 10 recorded", pr)
	}
	if pr := progress(t, s, proj, 1); pr.Recorded {
		t.Errorf("progress of another partition = %+v, want unrecorded", pr)
	}
	heads, err := s.Heads(ctx, proj, []string{"process/t/a", "process/t/b", "process/t/c"})
	if err != nil {
		t.Fatal(err)
	}
	wantA := controlplane.StreamHead{StreamID: "process/t/a", Sequence: 3, EventID: "ev-a3", Position: &framework.Position{Partition: 0, Offset: 7}}
	wantB := controlplane.StreamHead{StreamID: "process/t/b", Sequence: 5, EventID: "ev-b5"}
	if len(heads) != 2 || !sameJSON(t, heads["process/t/a"], wantA) || !sameJSON(t, heads["process/t/b"], wantB) {
		t.Errorf("Heads = %s; want a %s, b %s and no c", asJSON(heads), asJSON(wantA), asJSON(wantB))
	}

	// Lower sequences and a lower offset move nothing back.
	must(t, s.AdvancePartition(fctx, proj, 0, []controlplane.StreamHead{
		{StreamID: "process/t/a", Sequence: 2, EventID: "ev-a2", Position: &framework.Position{Partition: 0, Offset: 4}},
	}, 8))
	if pr := progress(t, s, proj, 0); pr.Next != 10 {
		t.Errorf("progress after a lower next = %d, want 10 kept", pr.Next)
	}
	heads, _ = s.Heads(ctx, proj, []string{"process/t/a"})
	if !sameJSON(t, heads["process/t/a"], wantA) {
		t.Errorf("head after a lower sequence = %s, want %s kept", asJSON(heads["process/t/a"]), asJSON(wantA))
	}

	// A raise without an event ID: the cursor moves, the old head is no
	// longer the event at it.
	must(t, s.AdvancePartition(fctx, proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 4}}, 12))
	heads, _ = s.Heads(ctx, proj, []string{"process/t/a"})
	if h := heads["process/t/a"]; h.Sequence != 4 || h.EventID != "" || h.Position != nil {
		t.Errorf("head after a raise without an event ID = %+v; want sequence 4, no event ID, no position", h)
	}
	if pr := progress(t, s, proj, 0); pr.Next != 12 {
		t.Errorf("progress = %d, want 12", pr.Next)
	}
	// Advance raises cursors too, never lowering one.
	must(t, s.Advance(fctx, proj, map[string]uint64{"process/t/a": 1, "process/t/b": 6}))
	if got := cursors(t, s, proj, "process/t/a", "process/t/b"); !maps.Equal(got, map[string]uint64{"process/t/a": 4, "process/t/b": 6}) {
		t.Errorf("cursors after Advance = %v; want a 4 (kept), b 6", got)
	}
}

func testCursorsMany(t *testing.T, s Store) {
	ctx := ctxFor(t)
	const n = 2500 // above a chunk of 1000
	want := map[string]uint64{}
	ids := []string{}
	for i := range n {
		id := "process/t/" + string(rune('a'+i%26)) + "/" + strconv.Itoa(i)
		ids = append(ids, id)
		if i%3 != 0 {
			want[id] = uint64(i + 1)
		}
	}
	must(t, s.Advance(ctx, proj, want))
	got := cursors(t, s, proj, ids...)
	if len(got) != n {
		t.Fatalf("Cursors returned %d streams, want all %d asked (0 for unknown ones)", len(got), n)
	}
	for _, id := range ids {
		if got[id] != want[id] {
			t.Fatalf("cursor of %s = %d, want %d", id, got[id], want[id])
		}
	}
	heads, err := s.Heads(ctx, proj, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != len(want) {
		t.Errorf("Heads returned %d streams, want the %d with a cursor", len(heads), len(want))
	}
	if got, err := s.Cursors(ctx, proj, nil); err != nil || len(got) != 0 {
		t.Errorf("Cursors of no streams = %v, %v", got, err)
	}
	if got := cursors(t, s, other, ids[1]); got[ids[1]] != 0 {
		t.Errorf("projection %s sees %s's cursor %d", other, proj, got[ids[1]])
	}
}

func testSaveDropsHeads(t *testing.T, s Store) {
	ctx := ctxFor(t)
	_, fctx := acquire(t, s, proj, 0)
	must(t, s.AdvancePartition(fctx, proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 3, EventID: "ev-a3"}}, 1))
	cp := framework.NewGlobalProjectionCheckpoint()
	cp.Advance("process/t/a", 3)
	must(t, s.Save(ctx, proj, cp))
	heads, err := s.Heads(ctx, proj, []string{"process/t/a"})
	if err != nil || heads["process/t/a"].Sequence != 3 || heads["process/t/a"].EventID != "" {
		t.Errorf("Heads after Save = %+v, %v; want the cursor 3 without an event ID", heads, err)
	}
}

func testUntracked(t *testing.T, s Store) {
	ctx := ctxFor(t)
	// State written without a fence (an older version): progress of a
	// partition that never had a fenced write cannot be told.
	must(t, s.Advance(ctx, proj, map[string]uint64{"process/t/a": 1}))
	if pr := progress(t, s, proj, 2); pr.Recorded || !pr.Untracked {
		t.Errorf("progress after unfenced writes only = %+v, want untracked", pr)
	}
	_, fctx := acquire(t, s, proj, 2)
	must(t, s.Advance(fctx, proj, map[string]uint64{"process/t/a": 2}))
	if pr := progress(t, s, proj, 2); pr.Recorded || pr.Untracked {
		t.Errorf("progress after a fenced write = %+v, want neither recorded nor untracked", pr)
	}
}

func testDeleteKeeps(t *testing.T, s Store) {
	ctx := ctxFor(t)
	f, fctx := acquire(t, s, proj, 0)
	must(t, s.AdvancePartition(fctx, proj, 0, []controlplane.StreamHead{{StreamID: "process/t/a", Sequence: 3, EventID: "ev-a3"}}, 9))
	names, err := s.Names(ctx)
	if err != nil || !slices.Contains(names, proj) {
		t.Fatalf("Names = %v, %v; want %s listed", names, err, proj)
	}
	must(t, s.Delete(fctx, proj))
	if got := cursors(t, s, proj, "process/t/a"); got["process/t/a"] != 0 {
		t.Errorf("cursor after Delete = %d", got["process/t/a"])
	}
	if heads, _ := s.Heads(ctx, proj, []string{"process/t/a"}); len(heads) != 0 {
		t.Errorf("heads after Delete = %+v", heads)
	}
	if names, _ := s.Names(ctx); slices.Contains(names, proj) {
		t.Errorf("Names after Delete = %v, still lists %s", names, proj)
	}
	if pr := progress(t, s, proj, 0); !pr.Recorded || pr.Next != 9 {
		t.Errorf("progress after Delete = %+v, want 9 kept", pr)
	}
	if err := s.CheckState(fctx, proj); err != nil {
		t.Errorf("the fence after Delete: CheckState = %v, want nil", err)
	}
	if e := epoch(t, s, proj); e != 0 {
		t.Errorf("epoch after Delete = %d", e)
	}
	if g, _ := acquire(t, s, proj, 0); g.Token <= f.Token {
		t.Errorf("token after Delete = %d, want above %d", g.Token, f.Token)
	}
}
