package kafkarunner_test

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/controlplane/memcontrol"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/kafkastore"
)

// supplies counts the supply events per stream.
type supplies struct {
	mu     sync.Mutex
	counts map[string]int
}

func (s *supplies) Name() string { return "supplies" }

func (s *supplies) Apply(_ context.Context, e framework.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[e.StreamID]++
	return nil
}

func (s *supplies) count(stream string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[stream]
}

// A replica of a projection on an in-process Kafka (kfake), with its control
// plane in memory (memcontrol): fencing, cursors, progress and parking as
// redischeckpoint.Store keeps them in Redis for replicas in several
// processes.
func ExampleRunner() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := kafkastore.New(ctx, kafkastore.Config{Seeds: cluster.ListenAddrs(), Topic: "mabis.process-events", Partitions: 3, Guard: appendguard.NewMemory()})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	for _, stream := range []string{"process/acme/malo-1", "process/acme/malo-2"} {
		if _, err := store.Append(ctx, stream, framework.NoStream, []framework.EventData{{Type: "SupplyBegun"}, {Type: "SupplyEnded"}}); err != nil {
			log.Fatal(err)
		}
	}

	p := &supplies{counts: map[string]int{}}
	runner, err := kafkarunner.New(kafkarunner.Config{
		Seeds: cluster.ListenAddrs(), Topic: "mabis.process-events", Projection: p,
		Checkpoints: memcontrol.NewStore(), Events: store, FlushInterval: 100 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	for p.count("process/acme/malo-1") < 2 || p.count("process/acme/malo-2") < 2 {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	fmt.Println("malo-1:", p.count("process/acme/malo-1"), "events; malo-2:", p.count("process/acme/malo-2"), "events")
	fmt.Println("capabilities:", runner.Capabilities())
	// Output:
	// malo-1: 2 events; malo-2: 2 events
	// capabilities: fencing=yes progress=yes parking=yes control=yes heads=yes server-check=yes ping=yes
}
