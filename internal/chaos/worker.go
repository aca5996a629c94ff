package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkarunner"
	"github.com/projector-dev/projector/redischeckpoint"
)

// WorkerConfig configures one counting worker process.
type WorkerConfig struct {
	Brokers []string
	Topic   string
	Group   string // version 0's consumer group; version N's is Group@vN
	Redis   RedisTopology
	// WaitReplicas is redischeckpoint.Config.WaitReplicas: checkpoints
	// wait for that many Redis replicas before offsets are committed.
	WaitReplicas   int
	Namespace      string
	Projection     string
	SessionTimeout time.Duration
	ReplicaID      string
	// Dial maps real Kafka and Redis addresses to the proxies of this
	// replica (the suite's network faults).
	Dial DialMap
	// AddrFile, when set, receives the address of the worker's HTTP
	// server (/healthz, /readyz) once it listens.
	AddrFile string
}

// AppliedKeyPart is the read-model key part under which a worker counts
// each applied (stream, sequence): <read model prefix>applied:<stream>,
// a hash of sequence -> times applied.
const AppliedKeyPart = "applied"

// AtKeyPart is the read-model key part under which a worker records when
// it applied each (stream, sequence): <prefix>at:<stream>, a hash of
// sequence -> the worker's wall clock in Unix nanoseconds at apply. The
// workers run on one host, so a stream's times must rise with its
// sequences; the checker reports a fall as out of order.
const AtKeyPart = "at"

// countingApply records every applied event in the same script as the
// cursor: HINCRBY applied:<stream> <sequence> 1 and HSET at:<stream>
// <sequence> <now>.
func countingApply(e framework.Event, w *redischeckpoint.Writes) error {
	seq := strconv.FormatUint(e.Sequence, 10)
	w.HIncrBy(w.Key(AppliedKeyPart, e.StreamID), seq, 1)
	w.HSet(w.Key(AtKeyPart, e.StreamID), seq, strconv.FormatInt(time.Now().UnixNano(), 10))
	return nil
}

// openProjection opens the counting projection on the Redis server at
// redisAddr, in namespace; closeFn closes its client.
func openProjection(redisAddr, namespace, name string) (*redischeckpoint.Store, *redischeckpoint.AtomicProjection, func(), error) {
	client := newRedisClient(RedisTopology{Addrs: []string{redisAddr}}, nil)
	store, p, err := openCounting(client, namespace, name, 0)
	if err != nil {
		_ = client.Close()
		return nil, nil, nil, err
	}
	return store, p, func() { _ = client.Close() }, nil
}

// openCounting opens the counting projection on a store in namespace.
func openCounting(client redis.UniversalClient, namespace, name string, waitReplicas int) (*redischeckpoint.Store, *redischeckpoint.AtomicProjection, error) {
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: namespace, WaitReplicas: waitReplicas})
	if err != nil {
		return nil, nil, err
	}
	p, err := store.NewAtomicProjection(name, countingApplyWithPoison)
	if err != nil {
		return nil, nil, err
	}
	return store, p, nil
}

// RunWorker runs a kafkarunner.VersionedRunner with the counting projection
// (so rebuilds and replays work as for any projection) until ctx is
// cancelled (SIGTERM in the worker process), then stops it gracefully.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || len(cfg.Redis.Addrs) == 0 || cfg.Namespace == "" || cfg.Projection == "" {
		return errors.New("chaos worker: brokers, topic, redis, namespace and projection are required")
	}
	client := newRedisClient(cfg.Redis, cfg.Dial)
	defer client.Close()
	store, p, err := openCounting(client, cfg.Namespace, cfg.Projection, cfg.WaitReplicas)
	if err != nil {
		return fmt.Errorf("chaos worker: %w", err)
	}
	var opts []kgo.Opt
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	if len(cfg.Dial) > 0 {
		opts = append(opts, kgo.Dialer(cfg.Dial.dial))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	vr, err := kafkarunner.NewVersionedRunner(kafkarunner.VersionedConfig{
		Name: cfg.Projection,
		Runner: kafkarunner.Config{
			Seeds: cfg.Brokers, ClientOpts: opts, Topic: cfg.Topic, Group: cfg.Group,
			Checkpoints: store, ReplicaID: cfg.ReplicaID,
			ShutdownTimeout: 20 * time.Second, Logger: logger,
		},
		NewProjection: func(name string) (framework.Projection, error) { return p.Version(name) },
	})
	if err != nil {
		return fmt.Errorf("chaos worker: %w", err)
	}
	if cfg.AddrFile != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("chaos worker: %w", err)
		}
		srv := &http.Server{Handler: vr.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		if err := os.WriteFile(cfg.AddrFile, []byte(ln.Addr().String()), 0o644); err != nil {
			return fmt.Errorf("chaos worker: %w", err)
		}
	}
	err = vr.Run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("chaos worker: %w", err)
	}
	return nil
}
