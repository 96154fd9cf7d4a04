package proxy

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"time"
)

// upstreamPool keeps idle HTTP/1.1 connections to one instance, most recently
// used first, so that a busy instance's connections stay warm and the rest age
// out. Connections the instance closed while idle are noticed before reuse
// (aliveCheckAfter) and after any stale failure (dropDead).
type upstreamPool struct {
	addr, host  string // where to dial; the Host header
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration

	mu       sync.Mutex
	idle     []*upConn // LIFO: the last one is the most recently used
	closed   bool
	sweeping bool // a sweep timer is armed
}

// aliveCheckAfter is how long a pooled connection may sit idle before it is
// checked for the instance's close (one non-blocking peek) on reuse. Connections
// busier than that are not checked: a request that finds one dead is retried on
// a fresh connection (see upstreamClient.roundTrip), and requests that must not
// be replayed check every connection.
const aliveCheckAfter = time.Second

// upConnBufSize is the size of each connection's read and write buffers.
const upConnBufSize = 16 << 10

// upConn is one connection to an instance with its buffers.
type upConn struct {
	pool      *upstreamPool
	c         net.Conn
	cr        countingReader
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	reused    bool // it served a request before this one
	rdl       readDeadline
	cancel    func() // expires the connection's deadlines: a cancelled request's blocked I/O returns
}

// countingReader counts the bytes read from the connection in the current
// exchange, so that a failure can tell "the instance closed a pooled connection
// before answering" from a failure partway through a response.
type countingReader struct {
	c     net.Conn
	n     int64
	limit int64 // fail once n reaches it (0: none)
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.limit > 0 && r.n >= r.limit {
		return 0, errHeadersTooLarge
	}
	n, err := r.c.Read(p)
	r.n += int64(n)
	return n, err
}

// readDeadline remembers a connection's read deadline, so that setting one
// close to the current one can be skipped: each SetReadDeadline is a timer
// update, and a keep-alive connection would otherwise make two per request.
type readDeadline struct{ t time.Time }

// set sets c's read deadline to t, or leaves the current one when it is at most
// a second earlier than t (timeouts here are seconds long). The zero t clears it.
func (d *readDeadline) set(c net.Conn, t time.Time) {
	if !t.IsZero() && !d.t.IsZero() && !d.t.After(t) && d.t.After(t.Add(-time.Second)) {
		return
	}
	d.t = t
	_ = c.SetReadDeadline(t)
}

// aLongTimeAgo is a deadline in the past: it makes blocked reads and writes return at once.
var aLongTimeAgo = time.Unix(1, 0)

func newUpstreamPool(o *Options, host string) *upstreamPool {
	addr := host
	if i, j := strings.LastIndexByte(host, ':'), strings.LastIndexByte(host, ']'); i < 0 || i < j {
		addr = host + ":80"
	}
	return &upstreamPool{
		addr:        addr,
		host:        host,
		dial:        upstreamDialer(o),
		maxIdle:     o.MaxIdleConnsPerHost,
		idleTimeout: o.UpstreamIdleTimeout,
	}
}

// upstreamDialer is the one dialer to instances (the pool's and the
// Transports'): it applies DialTimeout and marks failures as dial errors
// (never reached the instance), whatever the Dial hook returns.
func upstreamDialer(o *Options) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial, timeout := o.Dial, o.DialTimeout
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
}

// get returns an idle connection, or dials one (always, with fresh).
// checkAlive asks to verify that a pooled connection was not closed by the
// instance while idle (for requests that cannot be retried if it was); others
// are checked when idle for aliveCheckAfter.
func (p *upstreamPool) get(ctx context.Context, fresh, checkAlive bool) (*upConn, error) {
	now := time.Now()
	for !fresh {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		pc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		idle := now.Sub(pc.idleSince)
		if idle >= p.idleTimeout || ((checkAlive || idle >= aliveCheckAfter) && !connAlive(pc.c)) {
			pc.c.Close()
			continue
		}
		pc.reused = true
		return pc, nil
	}
	c, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	pc := &upConn{pool: p, c: c}
	pc.cancel = func() { _ = c.SetDeadline(aLongTimeAgo) }
	pc.cr.c = c
	pc.br = bufio.NewReaderSize(&pc.cr, upConnBufSize)
	pc.bw = bufio.NewWriterSize(c, 8<<10)
	return pc, nil
}

// put returns a connection whose last exchange completed cleanly.
func (p *upstreamPool) put(pc *upConn) {
	pc.idleSince = time.Now()
	if pc.br.Size() > upConnBufSize { // grown for a large response head: give it back
		pc.br = bufio.NewReaderSize(&pc.cr, upConnBufSize)
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		pc.c.Close()
		return
	}
	p.idle = append(p.idle, pc)
	arm := !p.sweeping
	p.sweeping = true
	p.mu.Unlock()
	if arm {
		time.AfterFunc(p.idleTimeout/2+time.Millisecond, p.sweep)
	}
}

// sweep closes connections idle for longer than idleTimeout; it re-arms itself
// while any connection is idle.
func (p *upstreamPool) sweep() {
	cutoff := time.Now().Add(-p.idleTimeout)
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && p.idle[i].idleSince.Before(cutoff) {
		p.idle[i].c.Close()
		i++
	}
	p.idle = append(p.idle[:0], p.idle[i:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	again := len(p.idle) > 0 && !p.closed
	p.sweeping = again
	p.mu.Unlock()
	if again {
		time.AfterFunc(p.idleTimeout/2+time.Millisecond, p.sweep)
	}
}

// dropDead closes the idle connections the instance closed. It runs when one
// turned out dead: after an instance restarts, every pooled connection is, and
// the next requests should not find them one by one.
func (p *upstreamPool) dropDead() {
	p.mu.Lock()
	kept := p.idle[:0]
	for _, pc := range p.idle {
		if connAlive(pc.c) {
			kept = append(kept, pc)
		} else {
			pc.c.Close()
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	p.mu.Unlock()
}

// close closes the idle connections and those returned later (the instance left the table).
func (p *upstreamPool) close() {
	p.mu.Lock()
	p.closed = true
	for _, pc := range p.idle {
		pc.c.Close()
	}
	p.idle = nil
	p.mu.Unlock()
}

// idleCount is the number of pooled connections (tests).
func (p *upstreamPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
