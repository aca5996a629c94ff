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
