package testenv

import (
	"net"
	"strconv"
	"testing"

	"github.com/projector-dev/projector/internal/tcpproxy"
)

// Proxy is a TCP proxy on loopback in front of one server (see
// internal/tcpproxy): Freeze holds every byte in both directions while
// connections stay open; Thaw delivers what was held.
type Proxy = tcpproxy.Proxy

// StartProxy listens on a free loopback port below 32768 and forwards each connection to
// target. It closes when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	var ln net.Listener
	for range 50 {
		port, err := freeLoopbackPort()
		if err != nil {
			t.Fatalf("testenv: proxy: %v", err)
		}
		if ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			break
		}
	}
	if ln == nil {
		t.Fatal("testenv: proxy: no port to listen on")
	}
	p := tcpproxy.Serve(ln, target)
	t.Cleanup(p.Close)
	return p
}
