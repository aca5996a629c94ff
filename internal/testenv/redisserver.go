package testenv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvRedisServer names the redis-server binary [StartRedisServer] runs; default: redis-server
// on PATH (scripts/test.sh installs it).
const EnvRedisServer = "PROJECTOR_REDIS_SERVER"

// RedisServer is a redis-server process of one test's own, for faults that must not disturb
// the other tests on the shared server: FLUSHALL, restarts without persistence, a restart
// from an older snapshot (what a failover to a lagging replica does), SIGSTOP, eviction
// policies, ACL users.
type RedisServer struct {
	Addr string
	// Dir is the server's working directory: its snapshot (dump.rdb) and AOF live there and
	// survive Stop and Kill.
	Dir string

	t    testing.TB
	bin  string
	args []string
	cmd  *exec.Cmd
	exit chan struct{}
}

// RedisServerOptions configure [StartRedisServer].
type RedisServerOptions struct {
	// AppendOnly turns AOF persistence on (appendfsync everysec).
	AppendOnly bool
	// Args are more redis-server arguments, e.g. "--maxmemory-policy", "allkeys-lru".
	Args []string
}

// StartRedisServer starts a real redis-server on a free loopback port below 32768, with no
// RDB snapshots unless asked (SAVE) and a working directory in t.TempDir(). It is killed when
// the test ends. Without a redis-server binary the test fails when real servers are required
// (PROJECTOR_REQUIRE_REAL=1 or CI=true), and is skipped otherwise.
func StartRedisServer(t testing.TB, opts RedisServerOptions) *RedisServer {
	t.Helper()
	bin := os.Getenv(EnvRedisServer)
	if bin == "" {
		bin = "redis-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		if RequireReal() {
			t.Fatalf("testenv: this test runs a redis-server of its own, but %q is not installed (%v): %s", bin, err, howToRunReal)
		}
		t.Skipf("testenv: no redis-server binary (%v); %s", err, howToRunReal)
	}
	s := &RedisServer{t: t, bin: path, Dir: t.TempDir()}
	port, err := freeLoopbackPort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(port)
	appendOnly := "no"
	if opts.AppendOnly {
		appendOnly = "yes"
	}
	s.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", appendOnly,
		"--appendfsync", "everysec", "--dir", s.Dir, "--dbfilename", "dump.rdb", "--daemonize", "no", "--logfile", filepath.Join(s.Dir, "redis.log")},
		opts.Args...)
	s.Start()
	t.Cleanup(func() {
		if s.cmd != nil {
			_ = s.cmd.Process.Kill()
			<-s.exit
		}
	})
	return s
}

// freeLoopbackPort is [FreeLoopbackPort].
func freeLoopbackPort() (int, error) { return FreeLoopbackPort() }

// FreeLoopbackPort picks a port that accepts a listener on 127.0.0.1, below
// the ephemeral range (outgoing connections take ports there, and a server
// once lost its own port to one), whose Redis Cluster bus port (the port
// plus 10000) is free and below that range too: a cluster node once failed
// to start because an outgoing connection held its bus port.
func FreeLoopbackPort() (int, error) {
	for range 200 {
		port := 12000 + rand.IntN(10000)
		free := true
		for _, p := range []int{port, port + 10000} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return port, nil
		}
	}
	return 0, errors.New("no free port in 12000..21999 (with its bus port) on 127.0.0.1")
}

// Start starts the server (again) on its port and directory: it loads what it persisted
// there (the AOF, or dump.rdb from a SAVE), and is empty otherwise.
func (s *RedisServer) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("testenv: redis-server %s is already running", s.Addr)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testenv: start redis-server: %v", err)
	}
	s.cmd, s.exit = cmd, make(chan struct{})
	exit := s.exit
	go func() { _ = cmd.Wait(); close(exit) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pingRedis(ctx, s.Addr, 30*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
		s.t.Fatalf("testenv: redis-server on %s does not answer: %v\n%s", s.Addr, err, log)
	}
}

// Stop shuts the server down without saving (SHUTDOWN NOSAVE): what it held only in memory
// is gone, as after a crash of a server without persistence.
func (s *RedisServer) Stop() {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	_ = c.Do(context.Background(), "SHUTDOWN", "NOSAVE").Err() // the connection drops: no reply
	s.wait()
}

// Kill sends SIGKILL to the server.
func (s *RedisServer) Kill() {
	s.t.Helper()
	_ = s.cmd.Process.Kill()
	s.wait()
}

func (s *RedisServer) wait() {
	s.t.Helper()
	select {
	case <-s.exit:
	case <-time.After(30 * time.Second):
		s.t.Fatalf("testenv: redis-server %s did not exit", s.Addr)
	}
	s.cmd = nil
}

// Pause stops the server process with SIGSTOP: clients time out. Resume continues it.
func (s *RedisServer) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *RedisServer) Resume() { s.signal(syscall.SIGCONT) }

func (s *RedisServer) signal(sig syscall.Signal) {
	s.t.Helper()
	if s.cmd == nil {
		s.t.Fatalf("testenv: redis-server %s is not running", s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("testenv: signal %v to redis-server: %v", sig, err)
	}
}

// Client returns a client of the server, closed when the test ends.
func (s *RedisServer) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// String names the server for logs.
func (s *RedisServer) String() string { return fmt.Sprintf("redis-server %s (dir %s)", s.Addr, s.Dir) }
