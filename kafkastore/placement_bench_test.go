package kafkastore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
)

// BenchmarkReadStreamBehindTail measures what it costs ReadStream to make
// sure no event of the stream lies beyond its catalog head: a 10-event
// stream at the start of a partition followed by 100,000 records of other
// streams, read in full (after=0) and when nothing is new (after=10), and
// the first read by a Store that has not read the partition yet.
//
//	go test -run '^$' -bench ReadStreamBehindTail -benchtime 20x -count 3 ./kafkastore
func BenchmarkReadStreamBehindTail(b *testing.B) {
	const tail = 100_000
	s, _ := newStore(b, kafkastore.Config{Partitions: 1})
	ctx := context.Background()
	const stream = "process/bench/short"
	short := make([]framework.EventData, 10)
	for i := range short {
		short[i] = framework.EventData{Type: "ValuesReceived", Data: payload}
	}
	if _, err := s.Append(ctx, stream, framework.NoStream, short); err != nil {
		b.Fatal(err)
	}
	batch := make([]framework.EventData, 1000)
	for i := range batch {
		batch[i] = framework.EventData{Type: "ValuesReceived", Data: payload}
	}
	for i := range tail / len(batch) {
		if _, err := s.Append(ctx, fmt.Sprintf("process/bench/filler-%d", i), framework.AnyVersion, batch); err != nil {
			b.Fatal(err)
		}
	}
	// A Store of its own per iteration: its first read of the stream reads
	// the whole tail, as every read did before the store remembered keys.
	b.Run("first-read", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			fresh, err := newGuarded(ctx, kafkastore.Config{Seeds: s.Config().Seeds, Topic: s.Config().Topic})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			n := 0
			for _, err := range fresh.ReadStream(ctx, stream, 0) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.StopTimer()
			fresh.Close()
			b.StartTimer()
			if n != 10 {
				b.Fatalf("read %d events, want 10", n)
			}
		}
	})
	for _, after := range []uint64{0, 10} {
		b.Run(fmt.Sprintf("after=%d", after), func(b *testing.B) {
			for b.Loop() {
				n := 0
				for _, err := range s.ReadStream(ctx, stream, after) {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != 10-int(after) {
					b.Fatalf("read %d events, want %d", n, 10-int(after))
				}
			}
		})
	}
}
