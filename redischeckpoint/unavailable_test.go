package redischeckpoint_test

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// counting is a store in namespace on client and its counting projection
// "counter" (HINCRBY counts <stream> per event).
func counting(t *testing.T, client redis.UniversalClient, namespace string) (*redischeckpoint.Store, *redischeckpoint.AtomicProjection) {
	t.Helper()
	s, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.NewAtomicProjection("counter", func(e framework.Event, w *redischeckpoint.Writes) error {
		w.HIncrBy(w.Key("counts"), e.StreamID, 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func event(seq uint64) framework.Event {
	return framework.Event{StreamID: "process/s/1", Sequence: seq, EventID: "e" + string(rune('0'+seq)), Type: "Counted"}
}

// TestApplyOnAnUnavailableRedis: the errors of a real server that cannot
// serve now — READONLY (a master demoted by a failover), a refused
// connection (stopped) — match framework.ErrUnavailable, so the runner
// retries instead of parking; nothing was applied, and the apply succeeds
// once the server serves again.
func TestApplyOnAnUnavailableRedis(t *testing.T) {
	srv := testenv.StartRedisServer(t, testenv.RedisServerOptions{})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	_, p := counting(t, client, "unavailable")
	ctx := t.Context()
	if err := p.Apply(ctx, event(1)); err != nil {
		t.Fatal(err)
	}

	// READONLY: a replica of a master that cannot be reached keeps its data.
	if err := client.Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	err := p.Apply(ctx, event(2))
	var ue *redischeckpoint.UnavailableError
	if !errors.Is(err, framework.ErrUnavailable) || !errors.As(err, &ue) || !strings.Contains(err.Error(), "READONLY") {
		t.Fatalf("apply on a read-only server: %v, want an UnavailableError (READONLY) matching framework.ErrUnavailable", err)
	}
	if err := client.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, event(2)); err != nil {
		t.Fatalf("apply after the server serves writes again: %v", err)
	}

	// Refused: the server is down.
	srv.Stop()
	if err := p.Apply(ctx, event(3)); !errors.Is(err, framework.ErrUnavailable) {
		t.Fatalf("apply on a stopped server: %v, want it to match framework.ErrUnavailable", err)
	}
}

// TestApplyRefusedIsNotUnavailable: an error that retrying cannot cure
// (here a script the server refuses for the key's type) is not
// ErrUnavailable: the runner parks such a stream.
func TestApplyRefusedIsNotUnavailable(t *testing.T) {
	env := testenv.Redis(t)
	_, p := counting(t, env.Client, "unavailable")
	ctx := t.Context()
	if err := env.Client.Set(ctx, p.Key("counts"), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Client.Del(ctx, p.Key("counts")) })
	err := p.Apply(ctx, event(1))
	if err == nil || errors.Is(err, framework.ErrUnavailable) {
		t.Fatalf("apply onto a key of the wrong type: %v, want an error that is not ErrUnavailable", err)
	}
}

// TestLoadingReplyIsUnavailable: the LOADING reply (a restarted server
// reading its AOF or RDB; the fault suite's Redis restarts produced it) is
// ErrUnavailable. A minimal RESP responder plays the loading server: a real
// one answers LOADING only for the moment it loads.
func TestLoadingReplyIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					// One reply per request line that starts a command.
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line[0] == '*' {
						_, _ = c.Write([]byte("-LOADING Redis is loading the dataset in memory\r\n"))
					}
				}
			}()
		}
	}()
	client := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = client.Close() })
	_, p := counting(t, client, "loading")
	if err := p.Apply(t.Context(), event(1)); !errors.Is(err, framework.ErrUnavailable) {
		t.Fatalf("apply against a loading server: %v, want it to match framework.ErrUnavailable", err)
	}
}
