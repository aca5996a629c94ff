package kafkarunner_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

func waitParked(t *testing.T, rep *replica, n int) []controlplane.ParkedStream {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		parked, err := rep.r.Parked(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(parked) >= n {
			return parked
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams parked after 30s, want %d", len(parked), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitParkedOnly waits until exactly the given streams are parked.
func waitParkedOnly(t *testing.T, rep *replica, streams ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		parked, err := rep.r.Parked(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(parked))
		for i, ps := range parked {
			ids[i] = ps.StreamID
		}
		slices.Sort(ids)
		if slices.Equal(ids, slices.Sorted(slices.Values(streams))) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still parked after 30s: %+v, want only %v", parked, streams)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawEvent writes a record with the header contract directly, as a
// misbehaving second writer would.
func rawEvent(t *testing.T, f *fixture, stream string, seq int, id string) {
	t.Helper()
	rec := &kgo.Record{Topic: f.store.Config().Topic, Key: []byte(stream), Headers: []kgo.RecordHeader{
		{Key: kafkastore.HeaderStreamID, Value: []byte(stream)},
		{Key: kafkastore.HeaderSequence, Value: []byte(itoa(seq))},
		{Key: kafkastore.HeaderEventID, Value: []byte(id)},
		{Key: kafkastore.HeaderType, Value: []byte("Counted")},
	}}
	if err := f.env.Client(t).ProduceSync(ctxFor(t), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestGapsConflictsAndPanicsParkTheirStreams(t *testing.T) {
	f := newFixture(t, 3)
	want := f.produce(t, 20, 2, "process/ok/")
	ctx := ctxFor(t)
	// A gap: sequence 1, then 3.
	rawEvent(t, f, "process/bad/gap", 1, "g1")
	rawEvent(t, f, "process/bad/gap", 3, "g3")
	// A conflict: a second writer repeats sequence 2 with another ID.
	rawEvent(t, f, "process/bad/conflict", 1, "c1")
	rawEvent(t, f, "process/bad/conflict", 2, "c2")
	rawEvent(t, f, "process/bad/conflict", 2, "c2-other")
	// A panic in the projection.
	if _, err := f.store.Append(ctx, "process/bad/panic", framework.NoStream, []framework.EventData{{Type: "Counted"}, {Type: "Panic"}}); err != nil {
		t.Fatal(err)
	}
	var buggy atomic.Bool
	buggy.Store(true)
	p, err := f.rstore.NewAtomicProjection(f.name, func(e framework.Event, w *redischeckpoint.Writes) error {
		if e.Type == "Panic" && buggy.Load() {
			panic("projection bug on " + e.String())
		}
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := f.start(t, p, nil)
	want["process/bad/gap"], want["process/bad/conflict"], want["process/bad/panic"] = 1, 2, 1
	f.waitCounts(t, p, want, time.Minute)
	parked := waitParked(t, rep, 3)
	reasons := map[string]string{}
	for _, ps := range parked {
		reasons[ps.StreamID] = ps.Reason + " at " + itoa(int(ps.Sequence)) + ": " + ps.Error
	}
	for stream, wantReason := range map[string]string{
		"process/bad/gap":      "gap at 3: framework: stream process/bad/gap: sequence gap: expected 2, got 3",
		"process/bad/conflict": "conflict at 2: sequence 2 of stream process/bad/conflict was applied as event c2; event c2-other repeats it",
		"process/bad/panic":    "apply-failed at 2: panic: projection bug on process/bad/panic@2",
	} {
		if !strings.HasPrefix(reasons[stream], wantReason) {
			t.Errorf("%s parked as %q, want %q", stream, reasons[stream], wantReason)
		}
	}

	// The bug is fixed: a retry resumes the stream at the event, read
	// again from the event store.
	buggy.Store(false)
	if err := rep.r.RetryParked(ctx, "process/bad/panic", "test", "fixed in the next release"); err != nil {
		t.Fatal(err)
	}
	// The missing event is lost for good: skipping the gap accepts it and
	// applies sequence 3. Nothing in Kafka shows the stream past 1, so the
	// skip must be forced. The raw records are not in the catalog: the
	// resume reads them from the partition.
	if err := rep.r.SkipParked(ctx, "process/bad/gap", "test", "event 2 was never written (incident 7)"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("an unchecked skip of a gap at the stream's end: %v", err)
	}
	if _, err := rep.r.Resolver().Resolve(ctx, f.name, controlplane.Resolution{StreamID: "process/bad/gap", Action: controlplane.ResolveSkip,
		By: "test", Reason: "event 2 was never written (incident 7)", Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := rep.r.RetryParked(ctx, "process/ok/00001", "test", ""); err == nil {
		t.Error("retrying a stream that is not parked succeeded")
	}
	want["process/bad/gap"], want["process/bad/panic"] = 2, 2
	f.waitCounts(t, p, want, 30*time.Second)
	// A resume applies the stream's events first and removes its park
	// record after them, so the counts can be complete a moment before
	// the list is.
	waitParkedOnly(t, rep, "process/bad/conflict")
	if st := rep.r.Stats(); st.Parked != 3 || st.Applied < 44 {
		t.Errorf("stats = %+v", st)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	f := newFixture(t, 2)
	f.produce(t, 4, 1, "process/t/")
	p := f.counter(t)
	cfg := kafkarunner.Config{Seeds: f.env.Seeds, Topic: f.store.Config().Topic, Projection: p, Checkpoints: f.rstore, Events: f.store}
	r, err := kafkarunner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	status := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status("/healthz") != 503 || status("/readyz") != 503 {
		t.Error("a runner that has not started reports healthy or ready")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for status("/readyz") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("not ready after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status("/healthz") != 200 {
		t.Error("a running runner is not healthy")
	}
	for !slices.Equal(r.Assigned(), []int32{0, 1}) {
		if time.Now().After(deadline) {
			t.Fatalf("Assigned = %v, want both partitions", r.Assigned())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if status("/healthz") != 503 {
		t.Error("a stopped runner reports healthy")
	}
}

// TestServerSideBalancer runs two replicas with the KIP-848 consumer
// protocol (Kafka 4.x).
func TestServerSideBalancer(t *testing.T) {
	f := newFixture(t, 4)
	want := f.produce(t, 100, 5, "process/t/")
	p := f.counter(t)
	kip848 := func(c *kafkarunner.Config) { c.ServerSideBalancer = true }
	a, b := f.start(t, p, kip848), f.start(t, p, kip848)
	f.waitCounts(t, p, want, time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for len(a.r.Assigned())+len(b.r.Assigned()) != 4 || len(a.r.Assigned()) == 0 || len(b.r.Assigned()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("assignments %v and %v, want the 4 partitions split", a.r.Assigned(), b.r.Assigned())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConflictAfterRestart: a second writer repeats the head sequence of a
// stream while no replica runs; the restarted replica, whose memory is
// empty, recognises the conflict from the event ID stored with the cursor.
func TestConflictAfterRestart(t *testing.T) {
	f := newFixture(t, 1)
	want := f.produce(t, 3, 2, "process/t/")
	p := f.counter(t)
	rep := f.start(t, p, nil)
	f.waitCounts(t, p, want, time.Minute)
	rep.stop(t)
	rawEvent(t, f, "process/t/00001", 2, "not-the-applied-event")
	again := f.start(t, f.counter(t), nil)
	parked := waitParked(t, again, 1)
	if parked[0].StreamID != "process/t/00001" || parked[0].Reason != controlplane.ParkConflict || parked[0].Sequence != 2 {
		t.Errorf("parked = %+v, want a conflict of process/t/00001 at 2", parked[0])
	}
	f.waitCounts(t, p, want, 10*time.Second) // nothing applied twice
}
