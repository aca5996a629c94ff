package framework_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
)

// meterTotals is a small read model: the energy reported per stream.
type meterTotals struct {
	mu    sync.Mutex
	total map[string]int64
}

func (m *meterTotals) Name() string { return "meter-totals" }

func (m *meterTotals) Apply(_ context.Context, e framework.Event) error {
	if e.Type != "ValuesReceived" {
		return nil // unknown types are ignored
	}
	var wh int64
	if _, err := fmt.Sscanf(string(e.Data), "%d", &wh); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total[e.StreamID] += wh
	return nil
}

func appendValues(ctx context.Context, store framework.EventStore, stream string, values ...int) {
	events := make([]framework.EventData, len(values))
	for i, v := range values {
		events[i] = framework.EventData{Type: "ValuesReceived", Data: fmt.Appendf(nil, "%d", v)}
	}
	if _, err := store.Append(ctx, stream, framework.AnyVersion, events); err != nil {
		panic(err)
	}
}

// The original specification's example: list every process/ stream, run all
// streams, and later catch up all streams from the returned checkpoint.
func Example() {
	ctx := context.Background()
	store := memstore.NewEventStore()
	appendValues(ctx, store, "process/acme/malo-1", 10, 20)
	appendValues(ctx, store, "process/acme/malo-2", 5)
	appendValues(ctx, store, "process/zeta/malo-1", 7)
	appendValues(ctx, store, "partner/acme/1", 1000) // not a process stream

	runner, err := framework.NewProjectionRunner(framework.RunnerConfig{})
	if err != nil {
		panic(err)
	}
	listStreams := func() []string {
		var ids []string
		for id, err := range store.ListStreams(ctx, framework.ProcessPrefix) {
			if err != nil {
				panic(err)
			}
			ids = append(ids, id)
		}
		return ids
	}

	model := &meterTotals{total: map[string]int64{}}
	res, err := runner.RunAllStreams(ctx, model, store, listStreams())
	if err != nil {
		panic(err)
	}
	fmt.Println("run: applied", res.Applied, "events of", res.Streams, "streams")

	appendValues(ctx, store, "process/acme/malo-2", 15)
	res, err = runner.CatchUpAllStreams(ctx, model, store, listStreams(), res.Checkpoint)
	if err != nil {
		panic(err)
	}
	fmt.Println("catch-up: applied", res.Applied)
	for id, seq := range res.Checkpoint.All() {
		fmt.Printf("%s at %d: %d Wh\n", id, seq, model.total[id])
	}
	// Output:
	// run: applied 4 events of 3 streams
	// catch-up: applied 1
	// process/acme/malo-1 at 2: 30 Wh
	// process/acme/malo-2 at 2: 20 Wh
	// process/zeta/malo-1 at 1: 7 Wh
}

// Duplicates are skipped and counted; a gap stops the stream.
func ExampleProjectionRunner_Run() {
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{})
	count := 0
	p := framework.ProjectionFunc("count", func(context.Context, framework.Event) error {
		count++
		return nil
	})
	events := []framework.Event{
		{StreamID: "process/t/a", Sequence: 1},
		{StreamID: "process/t/a", Sequence: 2},
		{StreamID: "process/t/a", Sequence: 2}, // delivered twice
		{StreamID: "process/t/a", Sequence: 4}, // 3 is missing
	}
	res, err := runner.Run(context.Background(), p, events)
	fmt.Println("applied", count, "skipped", res.Skipped, "cursor", res.Checkpoint.Cursor("process/t/a"))
	fmt.Println(err)
	// Output:
	// applied 2 skipped 1 cursor 2
	// framework: stream process/t/a: sequence gap: expected 3, got 4 (event )
}

// A persistent catch-up loads the projection's named checkpoint, catches up
// every stream of one tenant, and stores only the cursors that moved.
func ExampleProjectionRunner_CatchUpPersistent() {
	ctx := context.Background()
	store := memstore.NewEventStore()
	checkpoints := memstore.NewCheckpointStore()
	appendValues(ctx, store, "process/acme/malo-1", 10, 20)
	appendValues(ctx, store, "process/other/malo-1", 99)

	acme, err := framework.TenantPrefix("acme")
	if err != nil {
		panic(err)
	}
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{})
	model := &meterTotals{total: map[string]int64{}}
	for range 2 { // the second run finds nothing new
		res, err := runner.CatchUpPersistent(ctx, model, store, checkpoints, acme)
		if err != nil {
			panic(err)
		}
		fmt.Println("applied", res.Applied)
	}
	cp, _ := checkpoints.Load(ctx, model.Name())
	fmt.Println("stored cursor:", cp.Cursor("process/acme/malo-1"), "total:", model.total["process/acme/malo-1"])
	_, err = framework.TenantPrefix("../other")
	fmt.Println(err)
	// Output:
	// applied 2
	// applied 0
	// stored cursor: 2 total: 30
	// framework: invalid tenant ID "../other": character '/' at byte 2 (allowed: letters, digits, '.', '_', '-')
}

// HandlerProjection dispatches by event type; JSONHandler decodes payloads.
func ExampleHandlerProjection() {
	type received struct {
		WattHours int64 `json:"wh"`
	}
	var total int64
	p := framework.HandlerProjection("totals", framework.Handlers{
		"ValuesReceived": framework.JSONHandler(func(_ context.Context, _ framework.Event, v received) error {
			total += v.WattHours
			return nil
		}),
	})
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{})
	_, err := runner.Run(context.Background(), p, []framework.Event{
		{StreamID: "process/t/a", Sequence: 1, Type: "ValuesReceived", Data: []byte(`{"wh":1200}`)},
		{StreamID: "process/t/a", Sequence: 2, Type: "SomethingNewer", Data: []byte(`{}`)},
		{StreamID: "process/t/a", Sequence: 3, Type: "ValuesReceived", Data: []byte(`{"wh":"x"}`)},
	})
	fmt.Println(total)
	fmt.Println(err)
	// Output:
	// 1200
	// framework: projection totals: stream process/t/a sequence 3 (event , type ValuesReceived): framework: stream process/t/a sequence 3: cannot decode ValuesReceived payload: json: cannot unmarshal string into Go struct field received.wh of type int64
}
