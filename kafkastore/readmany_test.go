package kafkastore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
)

// streamByStream hides ReadStreams, so that the runner reads a store
// stream by stream, as it does a store without the capability.
type streamByStream struct{ framework.EventStore }

// seqRecorder records applied sequences per stream; failAt makes one
// event's apply fail.
type seqRecorder struct {
	mu      sync.Mutex
	applied map[string][]uint64
	failAt  string // "stream#seq"
}

var errModelDown = errors.New("read model down")

func (p *seqRecorder) Name() string { return "seqs" }

func (p *seqRecorder) Apply(_ context.Context, e framework.Event) error {
	if fmt.Sprintf("%s#%d", e.StreamID, e.Sequence) == p.failAt {
		return errModelDown
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.applied == nil {
		p.applied = map[string][]uint64{}
	}
	p.applied[e.StreamID] = append(p.applied[e.StreamID], e.Sequence)
	return nil
}

// runSummary is what a run did, comparable between two runs.
func runSummary(res framework.Result, err error, p *seqRecorder, saved *framework.GlobalProjectionCheckpoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, "applied %d skipped %d streams %d\ncursors %v\n", res.Applied, res.Skipped, res.Streams, maps.Collect(res.Checkpoint.All()))
	for _, id := range slices.Sorted(maps.Keys(p.applied)) {
		fmt.Fprintf(&b, "%s: %v\n", id, p.applied[id])
	}
	if saved != nil {
		fmt.Fprintf(&b, "saved %v\n", maps.Collect(saved.All()))
	}
	fmt.Fprintf(&b, "error: %v", err)
	return b.String()
}

// TestReadStreamsMatchesReadStream runs the runner's multi-stream entry
// points over one topic on the real broker twice, stream by stream
// (ReadStream) and in one pass (ReadStreams), and requires the same
// Result, errors, applied events and saved cursors. The topic holds
// healthy streams, a gap, a fork (a repeated sequence with another event
// ID), an off-home stream (Sarama's partitioner), a split stream
// (kafka-go's round robin), a stream outside the prefix, and a stream
// whose catalog head the partition lacks; the runs go before and after
// RebuildCatalog (streams found by searching the partitions, then through
// the catalog), from scratch and from cursors part way.
func TestReadStreamsMatchesReadStream(t *testing.T) {
	s, env := placementStore(t)
	ctx := ctxFor(t)
	topic := s.Config().Topic
	appendN(t, s, "process/one/a", 10)
	appendN(t, s, "process/one/b", 5)
	appendN(t, s, "process/two/x", 3)
	appendN(t, s, "process/one/short", 2)
	produceFranz(t, env, topic, "process/one/gap", 1, 2, 4, 5)
	produceFranz(t, env, topic, "process/one/fork", 1, 2)
	fork := &kgo.Record{Topic: topic, Key: []byte("process/one/fork"), Value: []byte("{}")}
	for _, h := range contract("process/one/fork", 2) {
		if h[0] == kafkastore.HeaderEventID {
			h[1] = "another writer's event"
		}
		fork.Headers = append(fork.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
	}
	if err := env.Client(t).ProduceSync(ctx, fork).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produceFranz(t, env, topic, "process/one/fork", 3)
	offHome := offHomeStream(t, "process/one/offhome-", 3)
	produceSarama(t, env, topic, nil, offHome, 1, 2, 3, 4)
	produceKafkaGo(t, env, topic, nil, "process/one/split", 1, 2, 3, 4, 5, 6)
	appendN(t, s, "process/one/a", 2) // records of a after the others

	// A catalog entry of "short" claiming sequence 5; the partition holds 2.
	e, _, _ := s.Entry(ctx, "process/one/short")
	forged := fmt.Sprintf(`{"partition":%d,"first_offset":%d,"head_sequence":5,"head_offset":%d}`, e.Partition, e.FirstOffset, e.HeadOffset)
	if err := env.Client(t).ProduceSync(ctx, &kgo.Record{Topic: s.Config().CatalogTopic, Key: []byte("process/one/short"), Value: []byte(forged)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reader, err := newGuarded(ctx, kafkastore.Config{Seeds: env.Seeds, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	ids := []string{"process/one/a", "process/one/b", "process/one/gap", "process/one/fork", offHome, "process/one/split",
		"process/one/short", "process/one/none", "process/one/a"}
	from := framework.NewGlobalProjectionCheckpoint()
	for id, seq := range map[string]uint64{"process/one/a": 4, "process/one/b": 5, "process/one/gap": 1, "process/one/fork": 1, offHome: 2, "process/one/short": 1} {
		from.Advance(id, seq)
	}
	type entryPoint struct {
		name string
		run  func(r *framework.ProjectionRunner, p *seqRecorder, s framework.EventStore) (framework.Result, *framework.GlobalProjectionCheckpoint, error)
	}
	all := []entryPoint{
		{"RunAllStreams", func(r *framework.ProjectionRunner, p *seqRecorder, s framework.EventStore) (framework.Result, *framework.GlobalProjectionCheckpoint, error) {
			res, err := r.RunAllStreams(ctx, p, s, ids)
			return res, nil, err
		}},
		{"CatchUpAllStreams", func(r *framework.ProjectionRunner, p *seqRecorder, s framework.EventStore) (framework.Result, *framework.GlobalProjectionCheckpoint, error) {
			res, err := r.CatchUpAllStreams(ctx, p, s, ids, from)
			return res, nil, err
		}},
	}
	prefixed := append(slices.Clone(all),
		entryPoint{"RunPrefix", func(r *framework.ProjectionRunner, p *seqRecorder, s framework.EventStore) (framework.Result, *framework.GlobalProjectionCheckpoint, error) {
			res, err := r.RunPrefix(ctx, p, s, "process/one/")
			return res, nil, err
		}},
		entryPoint{"CatchUpPersistent", func(r *framework.ProjectionRunner, p *seqRecorder, s framework.EventStore) (framework.Result, *framework.GlobalProjectionCheckpoint, error) {
			cps := memstore.NewCheckpointStore()
			if err := cps.Save(ctx, p.Name(), from); err != nil {
				t.Fatal(err)
			}
			res, err := r.CatchUpPersistent(ctx, p, s, cps, "process/one/")
			saved, loadErr := cps.Load(ctx, p.Name())
			if loadErr != nil {
				t.Fatal(loadErr)
			}
			return res, saved, err
		}},
	)
	compare := func(t *testing.T, eps []entryPoint, wantFailed []string) {
		for _, ep := range eps {
			for _, concurrency := range []int{1, 3} {
				t.Run(fmt.Sprintf("%s/concurrency%d", ep.name, concurrency), func(t *testing.T) {
					r, err := framework.NewProjectionRunner(framework.RunnerConfig{Concurrency: concurrency, BatchSize: 3})
					if err != nil {
						t.Fatal(err)
					}
					summary := func(s framework.EventStore) (string, error) {
						p := &seqRecorder{failAt: "process/one/b#4"}
						res, saved, err := ep.run(r, p, s)
						return runSummary(res, err, p, saved), err
					}
					want, _ := summary(streamByStream{reader})
					got, err := summary(reader)
					if got != want {
						t.Fatalf("one pass:\n%s\n\nstream by stream:\n%s", got, want)
					}
					var failed []string
					for _, id := range wantFailed {
						if !strings.Contains(fmt.Sprint(err), "stream "+id+" stopped") {
							failed = append(failed, id)
						}
					}
					if len(failed) > 0 {
						t.Errorf("no StreamError for %v in %v", failed, err)
					}
					t.Logf("%s", got)
				})
			}
		}
	}
	t.Run("searched", func(t *testing.T) {
		compare(t, all, []string{"process/one/gap", "process/one/fork", "process/one/split", "process/one/short"})
	})
	if _, err := reader.RebuildCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("cataloged", func(t *testing.T) {
		compare(t, prefixed, []string{"process/one/gap", "process/one/fork", "process/one/split"})
	})
}

// freezingRecorder freezes the proxy in front of the broker when it
// applies its freezeAt-th event.
type freezingRecorder struct {
	seqRecorder
	n        int
	freezeAt int
	freeze   func()
}

func (p *freezingRecorder) Apply(ctx context.Context, e framework.Event) error {
	if err := p.seqRecorder.Apply(ctx, e); err != nil {
		return err
	}
	p.n++
	if p.n == p.freezeAt {
		p.freeze()
	}
	return nil
}

// TestOnePassStopsWhenTheBrokerFreezes: the connection to the real broker
// stops passing bytes in the middle of a one-pass RunAllStreams (a TCP
// proxy holds them). The run ends with ctx, not as failures of
// streams, and its checkpoint covers exactly the events applied; once the
// network is back, a catch-up from that checkpoint applies every other
// event once.
func TestOnePassStopsWhenTheBrokerFreezes(t *testing.T) {
	env := testenv.Kafka(t)
	if !env.Real {
		t.Skip("needs the real broker behind a TCP proxy (scripts/infra.sh)")
	}
	proxy := testenv.StartProxy(t, env.Seeds[0])
	var d net.Dialer
	viaProxy := kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, proxy.Addr)
	})
	s, _ := newStore(t, kafkastore.Config{Partitions: 3, ReadBatchBytes: 1 << 10, ClientOpts: []kgo.Opt{viaProxy}})
	ctx := ctxFor(t)
	ids := []string{"process/freeze/a", "process/freeze/b", "process/freeze/c", "process/freeze/d"}
	batch := make([]framework.EventData, 10)
	for i := range batch {
		batch[i] = framework.EventData{Type: "Counted", Data: payload}
	}
	for range 10 {
		for _, id := range ids {
			if _, err := s.Append(ctx, id, framework.AnyVersion, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	const total = 4 * 100
	r, err := framework.NewProjectionRunner(framework.RunnerConfig{BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	// The run's deadline comes 3 s after the freeze, however long the run
	// took to get there.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errGaveUp := errors.New("gave up waiting for the frozen broker")
	p := &freezingRecorder{freezeAt: 30, freeze: func() {
		proxy.Freeze()
		time.AfterFunc(3*time.Second, func() { cancel(errGaveUp) })
	}}
	res, err := r.RunAllStreams(runCtx, p, s, ids)
	if !errors.Is(err, context.Canceled) || context.Cause(runCtx) != errGaveUp {
		t.Fatalf("RunAllStreams with the broker frozen: %v, want ctx's end", err)
	}
	if se, ok := errors.AsType[*framework.StreamError](err); ok {
		t.Errorf("the frozen broker was reported as stream %s's failure: %v", se.StreamID, se)
	}
	var applied int64
	for _, id := range ids {
		n := uint64(len(p.applied[id]))
		applied += int64(n)
		if got := res.Checkpoint.Cursor(id); got != n || !slices.Equal(p.applied[id], seqRange(1, n)) {
			t.Errorf("%s: cursor %d, applied %v", id, got, p.applied[id])
		}
	}
	if applied != res.Applied || applied >= total || applied < 30 {
		t.Fatalf("applied %d (result %d) before the freeze stopped the run; want at least 30 and fewer than %d", applied, res.Applied, total)
	}
	t.Logf("applied %d of %d before ctx ended: %v", applied, total, err)

	proxy.Thaw()
	res, err = r.CatchUpAllStreams(ctx, p, s, ids, res.Checkpoint)
	if err != nil {
		t.Fatalf("catch-up after the network is back: %v", err)
	}
	if res.Applied != total-applied || res.Skipped != 0 {
		t.Errorf("catch-up applied %d, skipped %d; want %d and 0", res.Applied, res.Skipped, total-applied)
	}
	for _, id := range ids {
		if !slices.Equal(p.applied[id], seqRange(1, 100)) || res.Checkpoint.Cursor(id) != 100 {
			t.Errorf("%s applied %v (cursor %d), want 1..100 once each", id, p.applied[id], res.Checkpoint.Cursor(id))
		}
	}
}
