package kafkarunner_test

import (
	"context"
	"strings"
	"sync"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/kafkastore"
)

// memGuards holds one in-memory append registry per cluster and topic, shared by every
// Store a test of this process opens on the topic. Tests of writers in
// several processes use the Redis registry instead.
var memGuards sync.Map

// withGuard gives cfg the topic's in-memory registry unless it has a
// guard or is a single writer.
func withGuard(cfg kafkastore.Config) kafkastore.Config {
	if cfg.Guard == nil && !cfg.SingleWriter {
		g, _ := memGuards.LoadOrStore(strings.Join(cfg.Seeds, ",")+"/"+cfg.Topic, appendguard.NewMemory())
		cfg.Guard = g.(appendguard.Registry)
	}
	return cfg
}

// newGuarded is kafkastore.New with the topic's registry.
func newGuarded(ctx context.Context, cfg kafkastore.Config) (*kafkastore.Store, error) {
	return kafkastore.New(ctx, withGuard(cfg))
}
