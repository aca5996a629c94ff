package redischeckpoint_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Two writer processes race for version 0 of a stream through the append
// registry (here on an in-process Redis, miniredis): one reservation wins,
// the other gets a version conflict once the winner committed. kafkastore
// does these steps in Store.Append when Config.Guard is the registry.
func ExampleNewAppendRegistry() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	reg, err := redischeckpoint.NewAppendRegistry(redischeckpoint.Config{Client: client, Namespace: "demo"}, "mabis.process-events")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	const stream = "process/acme/malo-1"
	// A new stream: its head, read from the topic, is registered first.
	if _, err := reg.Seed(ctx, stream, appendguard.Head{Sequence: 0, Offset: -1}); err != nil {
		log.Fatal(err)
	}
	a, err := reg.Reserve(ctx, stream, framework.NoStream, 1, "writer-a", 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("writer a reserved sequence", a.First)

	_, err = reg.Reserve(ctx, stream, framework.NoStream, 1, "writer-b", 10*time.Second)
	var busy *appendguard.BusyError
	fmt.Println("writer b waits:", errors.As(err, &busy))

	// Writer a writes its event (a Kafka transaction), records where, and
	// commits.
	if err := reg.Record(ctx, a, 0, 42, 42); err != nil {
		log.Fatal(err)
	}
	if err := reg.Commit(ctx, a, 42); err != nil {
		log.Fatal(err)
	}
	_, err = reg.Reserve(ctx, stream, framework.NoStream, 1, "writer-b", 10*time.Second)
	var conflict *framework.VersionConflictError
	if errors.As(err, &conflict) {
		fmt.Println("writer b: conflict, the stream is at version", conflict.Actual)
	}
	// Output:
	// writer a reserved sequence 1
	// writer b waits: true
	// writer b: conflict, the stream is at version 1
}

type orderPlaced struct {
	Customer string `json:"customer"`
	Cents    int64  `json:"cents"`
}

type orderCancelled struct {
	Customer string `json:"customer"`
	Cents    int64  `json:"cents"`
}

// A read model of revenue per customer, on an in-process Redis
// (miniredis): each event type has a handler that takes its decoded
// payload; an event type without a handler (OrderShipped) is ignored, and
// a payload that does not decode stops its stream with a
// *framework.DecodeError.
func ExampleHandlers() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer client.Close()
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: "demo"})
	if err != nil {
		log.Fatal(err)
	}

	var h redischeckpoint.Handlers
	redischeckpoint.Handle(&h, "OrderPlaced", func(e framework.Event, p orderPlaced, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("revenue"), p.Customer, p.Cents)
		return nil
	})
	redischeckpoint.Handle(&h, "OrderCancelled", func(e framework.Event, p orderCancelled, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("revenue"), p.Customer, -p.Cents)
		return nil
	})
	p, err := store.NewAtomicProjection("revenue", h.Apply)
	if err != nil {
		log.Fatal(err)
	}

	event := func(stream string, seq uint64, typ, data string) framework.Event {
		return framework.Event{StreamID: stream, Sequence: seq, EventID: fmt.Sprintf("%s#%d", stream, seq), Type: typ, Data: []byte(data)}
	}
	ctx := context.Background()
	n, err := p.ApplyBatch(ctx, []framework.Event{
		event("order/acme/1", 1, "OrderPlaced", `{"customer":"c-7","cents":1250}`),
		event("order/acme/2", 1, "OrderPlaced", `{"customer":"c-7","cents":300}`),
		event("order/acme/1", 2, "OrderShipped", `{"carrier":"dhl"}`),
		event("order/acme/2", 2, "OrderCancelled", `{"customer":"c-7","cents":300}`),
		event("order/acme/3", 1, "OrderPlaced", `{"customer":"c-8","cents":"ten"}`),
	})
	fmt.Println("durably processed:", n)
	var bad *framework.DecodeError
	if errors.As(err, &bad) {
		fmt.Printf("stopped at %s sequence %d (%s)\n", bad.StreamID, bad.Sequence, bad.EventType)
	}
	revenue, err := client.HGet(ctx, p.Key("revenue"), "c-7").Result()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("revenue of c-7:", revenue)
	fmt.Println("handled types:", h.Types())
	// Output:
	// durably processed: 4
	// stopped at order/acme/3 sequence 1 (OrderPlaced)
	// revenue of c-7: 1250
	// handled types: [OrderCancelled OrderPlaced]
}
