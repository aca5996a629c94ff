package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// WorkerConfig configures one counting worker process.
type WorkerConfig struct {
	Brokers        []string
	Topic          string
	Group          string
	RedisAddr      string
	Namespace      string
	Projection     string
	SessionTimeout time.Duration
	ReplicaID      string
	// KafkaProxy, when set, is the address every Kafka connection goes
	// to (the suite's proxy in front of the broker, for partitions).
	KafkaProxy string
}

// AppliedKeyPart is the read-model key part under which a worker counts
// each applied (stream, sequence): <read model prefix>applied:<stream>,
// a hash of sequence -> times applied.
const AppliedKeyPart = "applied"

// countingApply records every applied event: HINCRBY applied:<stream>
// <sequence> 1, in the same script as the cursor.
func countingApply(e framework.Event, w *redischeckpoint.Writes) error {
	w.HIncrBy(w.Key(AppliedKeyPart, e.StreamID), strconv.FormatUint(e.Sequence, 10), 1)
	return nil
}

// openProjection opens the counting projection on a store in namespace.
func openProjection(redisAddr, namespace, name string) (*redischeckpoint.Store, *redischeckpoint.AtomicProjection, func(), error) {
	client, err := redischeckpoint.NewClient(redischeckpoint.ClientConfig{Addrs: []string{redisAddr}})
	if err != nil {
		return nil, nil, nil, err
	}
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: namespace})
	if err != nil {
		_ = client.Close()
		return nil, nil, nil, err
	}
	p, err := store.NewAtomicProjection(name, countingApply)
	if err != nil {
		_ = client.Close()
		return nil, nil, nil, err
	}
	return store, p, func() { _ = client.Close() }, nil
}

// RunWorker runs a kafkastore.Runner with the counting projection until ctx
// is cancelled (SIGTERM in the worker process), then stops it gracefully.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.RedisAddr == "" || cfg.Namespace == "" || cfg.Projection == "" {
		return errors.New("chaos worker: brokers, topic, redis, namespace and projection are required")
	}
	store, p, closeFn, err := openProjection(cfg.RedisAddr, cfg.Namespace, cfg.Projection)
	if err != nil {
		return fmt.Errorf("chaos worker: %w", err)
	}
	defer closeFn()
	var opts []kgo.Opt
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	if cfg.KafkaProxy != "" {
		var d net.Dialer
		opts = append(opts, kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, cfg.KafkaProxy)
		}))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := kafkastore.NewRunner(kafkastore.RunnerConfig{
		Seeds: cfg.Brokers, ClientOpts: opts, Topic: cfg.Topic, Group: cfg.Group,
		Projection: p, Checkpoints: store, ReplicaID: cfg.ReplicaID,
		ShutdownTimeout: 20 * time.Second, Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("chaos worker: %w", err)
	}
	err = r.Run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("chaos worker: %w", err)
	}
	return nil
}
