package worker

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// haRedis returns the Sentinels, master name and Cluster seeds of
// scripts/ha.sh's servers (the test command starts them); without them the
// test fails under PROJECTOR_REQUIRE_REAL or CI and is skipped otherwise.
func haRedis(t *testing.T) (sentinels []string, master string, cluster []string) {
	t.Helper()
	sentinels = splitList(os.Getenv("PROJECTOR_HA_REDIS_SENTINELS"))
	master = os.Getenv("PROJECTOR_HA_REDIS_MASTER_NAME")
	for _, node := range splitList(os.Getenv("PROJECTOR_HA_REDIS_CLUSTER")) {
		_, addr, _ := strings.Cut(node, "=") // "1=127.0.0.1:21400"
		cluster = append(cluster, addr)
	}
	if len(sentinels) == 0 || master == "" || len(cluster) == 0 {
		msg := "needs scripts/ha.sh's Redis Sentinel and Cluster (PROJECTOR_HA_REDIS_SENTINELS, _MASTER_NAME, _CLUSTER unset; scripts/test.sh starts them unless PROJECTOR_NO_HA=1)"
		if os.Getenv("PROJECTOR_REQUIRE_REAL") != "" || os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return sentinels, master, cluster
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// A worker reaches Redis through Sentinel (master name and Sentinel
// addresses) and on a Redis Cluster (seed addresses), configured by the
// PROJECTOR_REDIS_* variables alone, on the real servers: it becomes ready
// (group joined, Redis answering) and applies what is on the topic.
func TestWorkerOnRedisSentinelAndCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs workers on real servers")
	}
	sentinels, master, cluster := haRedis(t)
	kafka := testenv.Kafka(t)
	for _, c := range []struct {
		name string
		env  map[string]string
	}{
		{"sentinel", map[string]string{"PROJECTOR_REDIS_ADDRS": strings.Join(sentinels, ","), "PROJECTOR_REDIS_SENTINEL_MASTER": master}},
		{"cluster", map[string]string{"PROJECTOR_REDIS_ADDRS": strings.Join(cluster, ","), "PROJECTOR_REDIS_CLUSTER": "yes"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			topic := kafka.TopicName(t, "orders")
			projection := "orders-" + strings.ReplaceAll(topic, ".", "-")
			events, err := kafkastore.New(ctx, kafkastore.Config{Seeds: kafka.Seeds, Topic: topic, Partitions: 2, ReplicationFactor: 1, Guard: appendguard.NewMemory()})
			if err != nil {
				t.Fatal(err)
			}
			defer events.Close()
			if _, err := events.Append(ctx, "process/acme/1", framework.NoStream, []framework.EventData{{Type: "Ordered"}, {Type: "Ordered"}}); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PROJECTOR_KAFKA_BROKERS", strings.Join(kafka.Seeds, ","))
			t.Setenv("PROJECTOR_TOPIC", topic)
			t.Setenv("PROJECTOR_PROJECTION", projection)
			t.Setenv("PROJECTOR_REDIS_NAMESPACE", "worker-test")
			t.Setenv("PROJECTOR_KAFKA_SESSION_TIMEOUT", "6s")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var stdout, stderr syncBuffer
			built := make(chan *redischeckpoint.AtomicProjection, 1)
			opts := Options{Name: "orders", Stdout: &stdout, Stderr: &stderr,
				Setup: func(_ context.Context, w *Worker) (Projection, error) {
					p, err := w.Store.NewAtomicProjection(w.Config.Projection, func(e framework.Event, w *redischeckpoint.Writes) error {
						w.HIncrBy(w.Key("orders"), e.StreamID, 1)
						return nil
					})
					if err == nil {
						built <- p
					}
					return Versioned(p), err
				}}
			done := make(chan error, 1)
			go func() { done <- Run(ctx, []string{"-http", "127.0.0.1:0"}, opts) }()
			var base string
			for addr := regexp.MustCompile(`on (http://\S+)`); base == ""; time.Sleep(20 * time.Millisecond) {
				select {
				case err := <-done:
					t.Fatalf("the worker ended early: %v\n%s", err, stderr.String())
				default:
				}
				if m := addr.FindStringSubmatch(stdout.String()); m != nil {
					base = m[1]
				}
			}
			var p *redischeckpoint.AtomicProjection
			select {
			case p = <-built:
			case <-ctx.Done():
				t.Fatalf("Setup did not run\n%s", stderr.String())
			}
			for {
				code, _, err := get(ctx, base+"/readyz")
				if err == nil && code == 200 {
					if n, _ := p.Client().HGet(ctx, p.Key("orders"), "process/acme/1").Int(); n == 2 {
						break
					}
				}
				if ctx.Err() != nil {
					t.Fatalf("not ready with both events applied: %d %v\n%s", code, err, stderr.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v\n%s", err, stderr.String())
			}
		})
	}
}
