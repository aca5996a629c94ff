// Command kafkaready waits until a Kafka cluster answers metadata requests and prints what it
// announces. scripts/test.sh and scripts/infra.sh run it while the broker boots.
//
//	kafkaready -seeds 127.0.0.1:19092 -timeout 90s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/projector-dev/projector/internal/testenv/kafkaprobe"
)

func main() {
	seeds := flag.String("seeds", "127.0.0.1:9092", "comma-separated seed brokers")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to wait")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	info, err := kafkaprobe.Wait(ctx, strings.Split(*seeds, ","))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("kafkaready: %s answers after %s: %s\n", *seeds, time.Since(start).Round(100*time.Millisecond), info)
}
