package testenv

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// RedisEnv is a Redis server for tests. It is shared by every test in the binary: isolate
// with Prefix.
type RedisEnv struct {
	// Client is this test's client, closed when the test ends.
	Client redis.UniversalClient
	Addr   string
	// Real is true for a Redis server, false for miniredis.
	Real bool
	// Kind says where the server came from: KindEnv, KindTestcontainers or KindMiniredis.
	Kind string
}

var (
	redisOnce sync.Once
	redisAddr string
	redisKind string
	redisErr  error
)

// Redis returns a client for the test binary's Redis server, finding or starting the server
// on first use (see the package documentation for the order). It fails the test when none
// can be had, and when only miniredis is left but RequireReal is set.
func Redis(t testing.TB) *RedisEnv {
	t.Helper()
	redisOnce.Do(func() { redisAddr, redisKind, redisErr = findRedis() })
	if redisErr != nil {
		t.Fatalf("testenv: no Redis: %v", redisErr)
	}
	env := &RedisEnv{Addr: redisAddr, Kind: redisKind, Real: redisKind != KindMiniredis}
	if !env.Real {
		announceFake(t, fakeBanner("Redis", "miniredis", "no "+EnvRedisAddr+" and no Docker"))
	}
	client := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = client.Close() })
	env.Client = client
	return env
}

func findRedis() (addr, kind string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if addr := os.Getenv(EnvRedisAddr); addr != "" {
		if err := pingRedis(ctx, addr, 30*time.Second); err != nil {
			return "", "", fmt.Errorf("%s=%s does not answer: %w", EnvRedisAddr, addr, err)
		}
		return addr, KindEnv, nil
	}

	ok, why := dockerHealthy()
	if ok {
		addr, err := startRedisContainer(ctx)
		if err != nil {
			return "", "", fmt.Errorf("docker is healthy but the Redis container failed: %w", err)
		}
		if err := pingRedis(ctx, addr, 30*time.Second); err != nil {
			return "", "", fmt.Errorf("Redis container: %w", err)
		}
		return addr, KindTestcontainers, nil
	}

	if RequireReal() {
		return "", "", fmt.Errorf("a real Redis is required (%s) but %s is unset and Docker is unavailable (%v); "+
			"refusing to fall back to miniredis: %s", requireRealWhy(), EnvRedisAddr, why, howToRunReal)
	}

	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		return "", "", fmt.Errorf("miniredis: %w", err)
	}
	onShutdown(m.Close)
	return m.Addr(), KindMiniredis, nil
}

func pingRedis(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Prefix returns a name unique to this test and run (the test's name and a random suffix),
// to use as a key prefix or as a projection name. When the test ends every key containing it
// is deleted (SCAN + DEL), so it also covers keys that wrap it in a hash tag ("x:{name}:y").
func (e *RedisEnv) Prefix(t testing.TB) string {
	t.Helper()
	prefix := uniqueName(t)
	addr := e.Addr
	t.Cleanup(func() {
		// Its own client: the test's client is closed by then.
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if n, err := deleteMatching(ctx, c, "*"+globEscape(prefix)+"*"); err != nil {
			t.Logf("testenv: deleting keys with %q (%d deleted): %v", prefix, n, err)
		}
	})
	return prefix
}

func deleteMatching(ctx context.Context, c *redis.Client, pattern string) (int, error) {
	var cursor uint64
	deleted := 0
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, 500).Result()
		if err != nil {
			return deleted, err
		}
		if len(keys) > 0 {
			// One key per DEL keeps this valid on Redis Cluster, where keys of one batch may
			// live in different slots.
			pipe := c.Pipeline()
			for _, k := range keys {
				pipe.Del(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return deleted, err
			}
			deleted += len(keys)
		}
		if next == 0 {
			return deleted, nil
		}
		cursor = next
	}
}

// globEscape quotes the characters SCAN MATCH treats as pattern syntax. uniqueName produces
// none of them today; this keeps Prefix safe if that changes.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}

// RedisCPU returns the CPU time the Redis server of c has used (used_cpu_user
// plus used_cpu_sys of INFO cpu), for benchmarks that measure Redis's share.
func RedisCPU(t testing.TB, c redis.UniversalClient) time.Duration {
	t.Helper()
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("INFO cpu %s: %v", line, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
