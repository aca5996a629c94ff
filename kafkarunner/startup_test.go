package kafkarunner_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/internal/tcpproxy"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/kafkarunner"
)

// TestReplicaWaitsForServersThatAreDown starts a replica while its broker,
// or its Redis, refuses connections (a port nothing listens on). The
// replica waits: Run does not return, State is "waiting", Ready fails and
// LastError says why. Once a proxy to the real server listens on that
// port, it starts and applies every event exactly once.
func TestReplicaWaitsForServersThatAreDown(t *testing.T) {
	for _, down := range []string{"kafka", "redis"} {
		t.Run(down, func(t *testing.T) {
			addr := unusedAddr(t)
			var f *fixture
			var target string
			mod := func(*kafkarunner.Config) {}
			if down == "redis" {
				red := testenv.Redis(t)
				rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
				t.Cleanup(func() { _ = rdb.Close() })
				f = newFixtureOn(t, 2, red, rdb, red.Prefix(t))
				target = red.Addr
			} else {
				f = newFixture(t, 2)
				target = f.env.Seeds[0]
				// Its own event store from Seeds, as a worker's runner makes it.
				mod = func(c *kafkarunner.Config) { c.Seeds, c.Events = []string{addr}, nil }
			}
			want := f.produce(t, 20, 3, "process/t/")
			p := f.counter(t)
			rep := f.start(t, p, mod)

			deadline := time.Now().Add(20 * time.Second)
			for rep.r.State() != "waiting" || rep.r.LastError() == "" {
				select {
				case err := <-rep.done:
					t.Fatalf("Run returned while %s was down: %v", down, err)
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("state %q, last error %q: the replica does not say it waits for %s", rep.r.State(), rep.r.LastError(), down)
				}
			}
			time.Sleep(2 * time.Second) // a few attempts
			select {
			case err := <-rep.done:
				t.Fatalf("Run returned while %s was down: %v", down, err)
			default:
			}
			if err := rep.r.Ready(ctxFor(t)); err == nil {
				t.Error("ready while waiting for " + down)
			}
			if !strings.Contains(rep.r.LastError(), "connection refused") {
				t.Errorf("last error %q does not say the connection was refused", rep.r.LastError())
			}

			// The server comes up on the address the replica was given.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listen on %s again: %v", addr, err)
			}
			proxy := tcpproxy.Serve(ln, target)
			t.Cleanup(proxy.Close)
			f.waitCounts(t, p, want, time.Minute)
			if s := rep.r.State(); s != "running" {
				t.Errorf("state %q after the server came up", s)
			}
		})
	}
}

// unusedAddr returns a loopback address nothing listens on (for now).
func unusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return "127.0.0.1:" + strconv.Itoa(port)
}
