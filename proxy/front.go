package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The fast HTTP/1.1 front end: a server that only parses. It accepts the plain
// listener's connections, parses each request head in place (package wire)
// and hands the request to the pipeline (pipeline.go), answering through the
// connection itself (front_responder.go): the instance's response head and
// body are relayed as bytes (chunked bodies stay chunked), and a small
// response is one write. No http.Request, header map or per-request goroutine
// is made, and a plain request allocates nothing.
//
// It serves HTTP/1.1 requests with a plain head, no body or one of at most
// maxFastBody bytes with a Content-Length, to slugs whose instances are all
// http:// ones; it answers the pipeline's own errors too. Everything else goes
// to net/http (front_conn.go's handoff): the connection, with the bytes read so
// far, is handed to the http.Server behind a chanListener, which serves it from
// the start of that request for the rest of its life: malformed heads (400,
// 431), upgrades, h2c, Expect, chunked or large request bodies, HTTP/1.0, and
// routes to h2c or https instances.
type front struct {
	h    *Handler
	slow *chanListener // connections handed to net/http

	mu      sync.Mutex
	conns   map[*frontConn]struct{}
	closing atomic.Bool
	// draining: the proxy is shutting down but still serving (the shutdown delay). Every
	// response then ends its connection with Connection: close, so that keep-alive clients
	// reconnect, through the Service, to a proxy that stays, before this one stops
	// listening. Closing an idle kept-alive connection instead races with the client's next
	// request, which then fails.
	draining atomic.Bool
}

// maxFastBody is the largest request body the front end reads before forwarding;
// larger bodies are streamed by net/http.
const maxFastBody = 64 << 10

var bgCtx = context.Background()

// watchAfter is how long a request waits on its instance before the front end
// starts watching for the client going away (then the instance's request is
// cancelled). Quicker requests pay nothing for it.
const watchAfter = 20 * time.Millisecond

func newFront(h *Handler, slow *chanListener) *front {
	return &front{h: h, slow: slow, conns: map[*frontConn]struct{}{}}
}

// serve accepts connections until ln is closed.
func (f *front) serve(ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			f.h.log.Error(err, "accepting a connection failed; retrying", "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		fc := &frontConn{f: f, c: c, buf: make([]byte, 4<<10), watchDone: make(chan struct{}, 1)} // as net/http: 4 KiB to read heads
		fc.pr.remote = c.RemoteAddr().String()
		fc.pr.remoteIP, fc.pr.proto, fc.pr.ctx = remoteIP(fc.pr.remote), "HTTP/1.1", bgCtx
		fc.state.Store(connActive)
		f.mu.Lock()
		if f.closing.Load() {
			f.mu.Unlock()
			c.Close()
			return nil
		}
		f.conns[fc] = struct{}{}
		f.mu.Unlock()
		go fc.serve()
	}
}

// shutdown closes idle connections until none is left, or, once ctx is done,
// closes them all. Call it after closing the listener.
func (f *front) shutdown(done <-chan struct{}) error {
	f.closing.Store(true)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		n := len(f.conns)
		for fc := range f.conns {
			if fc.state.CompareAndSwap(connIdle, connClosed) {
				fc.c.Close()
			}
		}
		f.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-done:
			f.mu.Lock()
			for fc := range f.conns {
				fc.c.Close()
			}
			f.mu.Unlock()
			return errors.New("requests still in flight when the drain timeout ended")
		case <-tick.C:
		}
	}
}

func (f *front) untrack(fc *frontConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
}

// Connection states, for shutdown: only idle connections are closed early.
const (
	connActive int32 = iota
	connIdle
	connClosed
)
