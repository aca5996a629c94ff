package kafkastore_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// Appends with expected versions, on an in-process Kafka (kfake). Writers
// in several processes share a registry in Redis instead of the in-memory
// one (redischeckpoint.NewAppendRegistry), so that the expected versions
// hold across them.
func ExampleStore_Append() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	ctx := context.Background()
	store, err := kafkastore.New(ctx, kafkastore.Config{
		Seeds: cluster.ListenAddrs(), Topic: "mabis.process-events", Partitions: 3,
		Guard: appendguard.NewMemory(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	const stream = "process/acme/malo-1"
	opened, err := store.Append(ctx, stream, framework.NoStream, []framework.EventData{
		{Type: "SupplyBegun", Data: []byte(`{"malo":"51238696781"}`)},
		{Type: "SubstituteValues", Data: []byte(`{"day":"2026-03-01"}`)},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("appended sequences", opened[0].Sequence, "and", opened[1].Sequence)

	// A command handler that read the stream at version 1 loses the race.
	_, err = store.Append(ctx, stream, framework.ExactVersion(1), []framework.EventData{{Type: "SupplyEnded"}})
	var conflict *framework.VersionConflictError
	if errors.As(err, &conflict) {
		fmt.Println("conflict: the stream is at version", conflict.Actual)
	}

	for e, err := range store.ReadStream(ctx, stream, 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Sequence, e.Type)
	}
	// Output:
	// appended sequences 1 and 2
	// conflict: the stream is at version 2
	// 1 SupplyBegun
	// 2 SubstituteValues
}
