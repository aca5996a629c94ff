package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/projector-dev/projector/framework"
)

// NewStore returns an empty store that only the calling test uses.
type NewStore func(t *testing.T) framework.EventStore

// Run runs every conformance case against stores made by newStore, each in
// its own parallel subtest.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s framework.EventStore)
	}{
		{"AppendAssignsSequencesAndKeepsFields", testAppendFields},
		{"AppendAssignsEventIDs", testAppendAssignsEventIDs},
		{"ExpectedVersion", testExpectedVersion},
		{"ConcurrentExactAppendsOneWins", testConcurrentExactAppends},
		{"InvalidStreamIDs", testInvalidStreamIDs},
		{"UnknownStream", testUnknownStream},
		{"ReadAfterIsExclusive", testReadAfterIsExclusive},
		{"ReadStopsAtHeadOfCall", testReadStopsAtHead},
		{"ReadLongStreamInOrder", testReadLongStream},
		{"ReadCancelled", testReadCancelled},
		{"ListStreamsByPrefix", testListStreamsByPrefix},
		{"FullReplayOfThreeEvents", testFullReplay},
		{"IncrementalCatchUpFromTwoToFour", testIncrementalCatchUp},
		{"ThreeStreamsGiveCursors", testThreeStreams},
		{"CatchUpAcrossStreamsFeedsOnlyNewEvents", testCatchUpAcrossStreams},
		{"PrefixExcludesPartnerStreams", testPrefixExcludesPartner},
		{"SpecificationExample", testSpecificationExample},
		{"AFailedStreamStopsOnlyItself", testAFailedStreamStopsOnlyItself},
		{"ReadStreamsYieldsWhatReadStreamYields", testReadStreams},
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

func data(types ...string) []framework.EventData {
	out := make([]framework.EventData, len(types))
	for i, typ := range types {
		out[i] = framework.EventData{Type: typ, Data: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	return out
}

func mustAppend(t *testing.T, s framework.EventStore, stream string, n int) []framework.Event {
	t.Helper()
	types := make([]string, n)
	for i := range types {
		types[i] = "Counted"
	}
	got, err := s.Append(ctxFor(t), stream, framework.AnyVersion, data(types...))
	if err != nil {
		t.Fatalf("Append(%s, %d events): %v", stream, n, err)
	}
	return got
}

func readAll(t *testing.T, s framework.EventStore, stream string, after uint64) []framework.Event {
	t.Helper()
	var out []framework.Event
	for e, err := range s.ReadStream(ctxFor(t), stream, after) {
		if err != nil {
			t.Fatalf("ReadStream(%s, after %d): %v", stream, after, err)
		}
		out = append(out, e)
	}
	return out
}

func sequences(events []framework.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Sequence
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func testAppendFields(t *testing.T, s framework.EventStore) {
	ctx := ctxFor(t)
	before := time.Now().Add(-time.Minute)
	in := []framework.EventData{
		{EventID: "e-1", Type: "Opened", SchemaVersion: 2, Data: []byte(`{"a":1}`), Metadata: map[string]string{framework.MetadataCorrelationID: "c-1"}},
		{EventID: "e-2", Type: "Closed", SchemaVersion: 1, Data: []byte(`{}`)},
	}
	got, err := s.Append(ctx, "process/t1/p1", framework.NoStream, in)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if !slices.Equal(sequences(got), []uint64{1, 2}) {
		t.Fatalf("Append returned sequences %v, want [1 2]", sequences(got))
	}
	read := readAll(t, s, "process/t1/p1", 0)
	if len(read) != 2 {
		t.Fatalf("read %d events, want 2", len(read))
	}
	for i, e := range read {
		want := in[i]
		if e.StreamID != "process/t1/p1" || e.Sequence != uint64(i+1) || e.EventID != want.EventID ||
			e.Type != want.Type || e.SchemaVersion != want.SchemaVersion || string(e.Data) != string(want.Data) {
			t.Errorf("event %d = %+v, want fields of %+v at sequence %d", i, e, want, i+1)
		}
		if e.RecordedAt.Before(before) || e.RecordedAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("event %d RecordedAt = %v, want about now", i, e.RecordedAt)
		}
		if got[i].EventID != e.EventID || got[i].Sequence != e.Sequence {
			t.Errorf("Append returned %v, read %v", got[i], e)
		}
	}
	if read[0].Metadata[framework.MetadataCorrelationID] != "c-1" {
		t.Errorf("metadata = %v, want correlation-id c-1", read[0].Metadata)
	}
	v, err := s.StreamVersion(ctx, "process/t1/p1")
	if err != nil || v != 2 {
		t.Errorf("StreamVersion = %d, %v; want 2", v, err)
	}
}

func testAppendAssignsEventIDs(t *testing.T, s framework.EventStore) {
	got := mustAppend(t, s, "process/t1/ids", 3)
	seen := map[string]bool{}
	for _, e := range readAll(t, s, "process/t1/ids", 0) {
		if e.EventID == "" || seen[e.EventID] {
			t.Errorf("event %d has ID %q: want a new unique ID", e.Sequence, e.EventID)
		}
		seen[e.EventID] = true
	}
	if len(got) != 3 {
		t.Errorf("Append returned %d events, want 3", len(got))
	}
}

func testExpectedVersion(t *testing.T, s framework.EventStore) {
	ctx := ctxFor(t)
	const id = "process/t1/versions"
	steps := []struct {
		name     string
		expected framework.ExpectedVersion
		wantErr  bool
		actual   uint64 // reported on conflict
	}{
		{"no stream on a new stream", framework.NoStream, false, 0},
		{"no stream on an existing stream", framework.NoStream, true, 1},
		{"exact version of the head", framework.ExactVersion(1), false, 0},
		{"exact version behind the head", framework.ExactVersion(1), true, 2},
		{"exact version ahead of the head", framework.ExactVersion(5), true, 2},
		{"any version", framework.AnyVersion, false, 0},
	}
	for _, st := range steps {
		_, err := s.Append(ctx, id, st.expected, data("Step"))
		if !st.wantErr {
			if err != nil {
				t.Fatalf("%s: Append: %v", st.name, err)
			}
			continue
		}
		if !errors.Is(err, framework.ErrVersionConflict) {
			t.Fatalf("%s: Append error = %v, want ErrVersionConflict", st.name, err)
		}
		conflict, ok := errors.AsType[*framework.VersionConflictError](err)
		if !ok {
			t.Fatalf("%s: error %T is not a *VersionConflictError", st.name, err)
		}
		if conflict.Actual != st.actual || conflict.Expected != st.expected || conflict.StreamID != id {
			t.Errorf("%s: conflict = %+v, want stream %s, expected %v, actual %d", st.name, conflict, id, st.expected, st.actual)
		}
	}
	if v, _ := s.StreamVersion(ctx, id); v != 3 {
		t.Errorf("after three accepted appends the version is %d, want 3 (a conflicting append must append nothing)", v)
	}
}

func testConcurrentExactAppends(t *testing.T, s framework.EventStore) {
	ctx := ctxFor(t)
	const id = "process/t1/race"
	mustAppend(t, s, id, 1)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = s.Append(ctx, id, framework.ExactVersion(1), data("Raced"))
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, framework.ErrVersionConflict):
			t.Errorf("a losing append failed with %v, want ErrVersionConflict", err)
		}
	}
	if won != 1 {
		t.Errorf("%d appends expecting version 1 succeeded, want exactly 1", won)
	}
	if got := sequences(readAll(t, s, id, 0)); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("stream holds sequences %v, want [1 2]", got)
	}
}

func testInvalidStreamIDs(t *testing.T, s framework.EventStore) {
	ctx := ctxFor(t)
	for _, id := range []string{"", "process//x", "process/t1/\x00", "/process/t1"} {
		if _, err := s.Append(ctx, id, framework.AnyVersion, data("X")); !errors.Is(err, framework.ErrInvalidStreamID) {
			t.Errorf("Append(%q) error = %v, want ErrInvalidStreamID", id, err)
		}
	}
	for _, err := range s.ListStreams(ctx, "") {
		if !errors.Is(err, framework.ErrInvalidStreamID) {
			t.Errorf("ListStreams(\"\") error = %v, want ErrInvalidStreamID", err)
		}
	}
}

func testUnknownStream(t *testing.T, s framework.EventStore) {
	v, err := s.StreamVersion(ctxFor(t), "process/t1/none")
	if err != nil || v != 0 {
		t.Errorf("StreamVersion of an unknown stream = %d, %v; want 0, nil", v, err)
	}
	if got := readAll(t, s, "process/t1/none", 0); len(got) != 0 {
		t.Errorf("ReadStream of an unknown stream yielded %d events", len(got))
	}
}

func testReadAfterIsExclusive(t *testing.T, s framework.EventStore) {
	const id = "process/t1/after"
	mustAppend(t, s, id, 5)
	for after := uint64(0); after <= 6; after++ {
		want := seqRange(after+1, 5)
		if got := sequences(readAll(t, s, id, after)); !slices.Equal(got, want) {
			t.Errorf("ReadStream(after %d) = %v, want %v", after, got, want)
		}
	}
}

func testReadStopsAtHead(t *testing.T, s framework.EventStore) {
	const id = "process/t1/head"
	mustAppend(t, s, id, 3)
	var got []uint64
	appended := false
	for e, err := range s.ReadStream(ctxFor(t), id, 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Sequence)
		if !appended {
			appended = true
			mustAppend(t, s, id, 2)
		}
	}
	if !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("a read begun at head 3 yielded %v, want [1 2 3]", got)
	}
}

func testReadLongStream(t *testing.T, s framework.EventStore) {
	const id = "process/t1/long"
	const n = 1500
	for range 3 {
		mustAppend(t, s, id, n/3)
	}
	if got := sequences(readAll(t, s, id, 0)); !slices.Equal(got, seqRange(1, n)) {
		t.Errorf("read %d events (first %v), want sequences 1..%d in order", len(got), got[:min(len(got), 5)], n)
	}
}

func testReadCancelled(t *testing.T, s framework.EventStore) {
	const id = "process/t1/cancel"
	mustAppend(t, s, id, 10)
	ctx, cancel := context.WithCancel(ctxFor(t))
	cancel()
	var gotErr error
	for _, err := range s.ReadStream(ctx, id, 0) {
		if err != nil {
			gotErr = err
			break
		}
	}
	if !errors.Is(gotErr, context.Canceled) {
		t.Errorf("reading with a cancelled context ended with %v, want context.Canceled", gotErr)
	}
}

func listAll(t *testing.T, s framework.EventStore, prefix string) []string {
	t.Helper()
	var out []string
	for id, err := range s.ListStreams(ctxFor(t), prefix) {
		if err != nil {
			t.Fatalf("ListStreams(%q): %v", prefix, err)
		}
		out = append(out, id)
	}
	return out
}

func testListStreamsByPrefix(t *testing.T, s framework.EventStore) {
	for _, id := range []string{"process/t10/a", "process/t1/b", "process/t1/a", "process/t2/a", "partner/t1/a"} {
		mustAppend(t, s, id, 1)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"process/", []string{"process/t1/a", "process/t1/b", "process/t10/a", "process/t2/a"}},
		{"process/t1/", []string{"process/t1/a", "process/t1/b"}},
		{"process/t1", []string{"process/t1/a", "process/t1/b", "process/t10/a"}},
		{"partner/", []string{"partner/t1/a"}},
		{"nothing/", nil},
	}
	for _, tt := range tests {
		if got := listAll(t, s, tt.prefix); !slices.Equal(got, tt.want) {
			t.Errorf("ListStreams(%q) = %v, want %v", tt.prefix, got, tt.want)
		}
	}
}

// testReadStreams: a store that is a [framework.MultiStreamReader] yields
// for each listed stream the events ReadStream yields after the same
// cursor, in the same order, and nothing of streams not listed; a stream
// nobody wrote yields nothing. Stores without the capability pass.
func testReadStreams(t *testing.T, s framework.EventStore) {
	reader, ok := s.(framework.MultiStreamReader)
	if !ok {
		t.Skip("the store reads streams one by one only")
	}
	ctx := ctxFor(t)
	for i, id := range []string{"process/t1/a", "process/t1/b", "process/t1/c", "process/t2/x"} {
		mustAppend(t, s, id, 3+i)
	}
	mustAppend(t, s, "process/t1/a", 2) // a's later events after the others'
	cursors := []framework.StreamCursor{{StreamID: "process/t1/a", After: 0}, {StreamID: "process/t1/b", After: 2},
		{StreamID: "process/t1/c", After: 5}, {StreamID: "process/t1/none", After: 0}}
	got := map[string][]framework.Event{}
	for e, err := range reader.ReadStreams(ctx, cursors) {
		if err != nil {
			t.Fatalf("ReadStreams: %v", err)
		}
		got[e.StreamID] = append(got[e.StreamID], e)
	}
	for _, c := range cursors {
		want := readAll(t, s, c.StreamID, c.After)
		if !slices.EqualFunc(got[c.StreamID], want, sameEvent) {
			t.Errorf("ReadStreams yielded %v of %s after %d, ReadStream %v", sequences(got[c.StreamID]), c.StreamID, c.After, sequences(want))
		}
		delete(got, c.StreamID)
	}
	for id, events := range got {
		t.Errorf("ReadStreams yielded %d events of %s, which was not listed", len(events), id)
	}
}

func sameEvent(a, b framework.Event) bool {
	return a.StreamID == b.StreamID && a.Sequence == b.Sequence && a.EventID == b.EventID && a.Type == b.Type &&
		string(a.Data) == string(b.Data) && a.RecordedAt.Equal(b.RecordedAt)
}
