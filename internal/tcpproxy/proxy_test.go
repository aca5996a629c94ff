package tcpproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echo serves a line echo server on loopback.
func echo(t *testing.T) string {
	t.Helper()
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
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn) error {
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := bufio.NewReader(c).ReadString('\n')
	return err
}

func proxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestLatencyDelaysBothDirections(t *testing.T) {
	p := proxy(t)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
	p.SetLatency(150 * time.Millisecond)
	start := time.Now()
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
	// Two hops of 150 ms: a lower bound only (no upper bound on a busy machine).
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("round trip took %v with 150ms latency each way", d)
	}
}

func TestResetAbortsOpenConnections(t *testing.T) {
	p := proxy(t)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	err = roundTrip(c)
	if err == nil {
		t.Fatal("a reset connection still answered")
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Logf("error after reset: %v", err)
	}
	// New connections work.
	c2, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(c2); err != nil {
		t.Fatalf("a new connection after Reset: %v", err)
	}
}

func TestRefuseResetsNewConnections(t *testing.T) {
	p := proxy(t)
	p.Refuse(true)
	c, err := net.Dial("tcp", p.Addr)
	if err == nil {
		if err = roundTrip(c); err == nil {
			t.Fatal("a refused connection answered")
		}
		c.Close()
	}
	p.Refuse(false)
	c, err = net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Fatalf("after Refuse(false): %v", err)
	}
}

func TestFreezeHoldsThenDelivers(t *testing.T) {
	p := proxy(t)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Freeze()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a frozen proxy delivered")
	}
	p.Thaw()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("after Thaw: %v", err)
	}
}

func TestFreezeHoldsNewConnections(t *testing.T) {
	p := proxy(t)
	p.Freeze()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a connection opened while frozen was served")
	}
	p.Thaw()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("after Thaw: %v", err)
	}
}
