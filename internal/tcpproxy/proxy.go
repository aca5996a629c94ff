// Package tcpproxy is a TCP proxy on loopback that injects network faults,
// for fault tests (internal/testenv) and the fault suite (internal/chaos):
// it holds traffic (a partition as a paused switch or a congested link
// makes it), delays it (latency), resets every connection, and refuses new
// ones.
package tcpproxy

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on loopback in front of one server. Freeze holds every byte in both
// directions while connections stay open (a network partition as a paused switch or a
// congested link makes it: requests and replies arrive late, nothing is refused); Thaw
// delivers what was held and lets traffic flow again.
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	cond    *sync.Cond
	frozen  bool
	refuse  bool
	latency time.Duration
	closed  bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// Serve forwards each connection ln accepts to target until Close.
func Serve(ln net.Listener, target string) *Proxy {
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(p.accept)
	return p
}

// New listens on a free loopback port and forwards each connection to
// target until Close.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tcpproxy: %w", err)
	}
	return Serve(ln, target), nil
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.mu.Unlock()
		if refuse {
			abort(c)
			continue
		}
		p.wg.Go(func() { p.connect(c) })
	}
}

// connect dials the target for the accepted c, once the proxy is not
// frozen (a partition holds new connections too: the server sees nothing
// of them until the thaw), and pipes both ways.
func (p *Proxy) connect(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	for p.frozen && !p.closed {
		p.cond.Wait()
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		c.Close()
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		abort(c)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[s] = struct{}{}
	p.mu.Unlock()
	p.wg.Go(func() { p.pipe(s, c) })
	p.wg.Go(func() { p.pipe(c, s) })
}

// abort closes c with a TCP reset (no FIN): the peer reads ECONNRESET.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// pipe copies src to dst, holding what it read while the proxy is frozen
// and delaying it by the latency.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() {
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen && !p.closed {
				p.cond.Wait()
			}
			closed, latency := p.closed, p.latency
			p.mu.Unlock()
			if closed {
				return
			}
			if latency > 0 {
				time.Sleep(latency)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: close the other side too
		}
	}
}

// Freeze holds all traffic from now on.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

// Thaw delivers what was held and lets traffic flow.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = false
	p.cond.Broadcast()
}

// SetLatency delays every chunk of data in both directions by d from now
// on (0: none), as a slow or distant link.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Refuse makes the proxy reset every new connection at once (true), as a
// server or firewall rejecting it, or accept them again (false).
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// Reset closes every open connection through the proxy with a TCP reset,
// in both directions, as a crashed middlebox or a peer's reset; what was
// held by a freeze is lost with them. New connections are served (unless
// refused).
func (p *Proxy) Reset() {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		abort(c)
	}
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
