package redischeckpoint_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/checkpointtest"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// startCluster runs a three-master Redis Cluster on loopback for this test
// and returns a client for it.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	env := testenv.Redis(t)
	requireRealRedis(t, env, "Redis Cluster")
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		t.Fatalf("redis-server and redis-cli must be on PATH (scripts/test.sh installs them): %v %v", err1, err2)
	}
	dir := t.TempDir()
	var addrs []string
	for i := range 3 {
		port := freePort(t)
		nodeDir := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(server, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(nodeDir, "nodes.conf"), "--save", "", "--appendonly", "no", "--dir", nodeDir)
		log, _ := os.Create(filepath.Join(nodeDir, "redis.log"))
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		addrs = append(addrs, addr)
		waitPing(t, addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = client.Close() })
	// Every node must see the cluster ok (all slots covered): one node's
	// view converges before another's, and a command routed to a node
	// that does not know yet fails with CLUSTERDOWN.
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range addrs {
		node := redis.NewClient(&redis.Options{Addr: addr})
		for {
			info, err := node.ClusterInfo(t.Context()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s: %v %s", addr, err, info)
			}
			time.Sleep(200 * time.Millisecond)
		}
		_ = node.Close()
	}
	return client
}

func waitPing(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for c.Ping(t.Context()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s does not answer", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCluster runs the conformance suite, fencing and an atomic apply on a
// real three-master Redis Cluster: one projection's keys share a slot, so
// its scripts and transactions work there.
func TestCluster(t *testing.T) {
	client := startCluster(t)
	t.Run("Conformance", func(t *testing.T) {
		checkpointtest.Run(t, func(t *testing.T) framework.ProjectionCheckpointStore {
			s, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: testNamespace(t), ChunkSize: 700})
			if err != nil {
				t.Fatal(err)
			}
			return nameMapper{s}
		})
	})
	t.Run("FencedAtomicApplyAndReset", func(t *testing.T) {
		ctx := ctxFor(t)
		s, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: "cluster"})
		if err != nil {
			t.Fatal(err)
		}
		p := totalsProjection(t, s)
		old, _ := s.AcquireFence(ctx, "totals", 1)
		fresh, err := s.AcquireFence(ctx, "totals", 1)
		if err != nil {
			t.Fatal(err)
		}
		events := []framework.Event{booked("process/t/a", 1, 5), booked("process/t/b", 1, 7), booked("process/t/a", 2, 1)}
		if n, err := p.ApplyBatch(controlplane.WithFence(ctx, fresh), events); err != nil || n != 3 {
			t.Fatalf("apply on Cluster = %d, %v", n, err)
		}
		if _, err := p.ApplyBatch(controlplane.WithFence(ctx, old), []framework.Event{booked("process/t/a", 3, 1)}); err == nil {
			t.Error("a stale fence wrote on Cluster")
		}
		if all, _ := client.HGet(ctx, p.Key("totals"), "all").Int64(); all != 13 {
			t.Errorf("total %d, want 13", all)
		}
		if names, err := s.Names(ctx); err != nil || len(names) != 1 || names[0] != "totals" {
			t.Errorf("Names on Cluster = %v, %v", names, err)
		}
		if err := p.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if n, _ := client.Exists(ctx, p.Key("totals")).Result(); n != 0 {
			t.Error("Reset left the read model on Cluster")
		}
	})
}
