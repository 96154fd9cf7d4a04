package proxy

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slugway/slugway/proxy/slugpath"
	"github.com/slugway/slugway/proxy/wire"
)

// The fast HTTP/1.1 front end. It accepts the plain listener's connections and
// serves the common request itself: HTTP/1.1, a plain head (package wire), a
// known slug whose instances are all http:// ones, no body or a small one with a
// Content-Length. It parses the head in place, writes the upstream request from
// those bytes, relays the instance's response head and body as bytes (chunked
// bodies stay chunked), and makes one write to the client for a small response.
// No http.Request, header map or per-request goroutine is made.
//
// Everything else goes to net/http: the connection, with the bytes read so far,
// is handed to the http.Server behind a chanListener, which serves it from the
// start of that request for the rest of its life. So net/http still answers
// every error about the client's request (400, 404, 405, 413, 431, 503), every
// upgrade, h2c, Expect, chunked or large request bodies, and HTTP/1.0 — exactly
// as before.
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
		fc.remote = c.RemoteAddr().String()
		fc.remoteIP = remoteIP(fc.remote)
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

// frontConn is one client connection on the front end.
type frontConn struct {
	f                *front
	c                net.Conn
	remote, remoteIP string
	state            atomic.Int32
	handedOff        bool
	now              time.Time // the current request's start, then its end (fewer clock reads)
	rdl              readDeadline
	served           int // requests answered on this connection

	buf      []byte // buf[r:w] is read and not yet consumed; the current head starts at r
	r, w     int
	head     int // the current request head's length
	req      wire.Request
	resp     wire.Response
	ck       wire.Chunked
	out      []byte   // the response head, and the body's first bytes
	te       []string // the current request's TE values
	xff      []string // and X-Forwarded-For values
	xfp      bool     // it has X-Forwarded-Proto
	xfh      bool     // and X-Forwarded-Host
	idem     bool     // it may be sent again after reaching an instance
	released bool     // the current exchange's upstream connection was released

	// Watching for the client going away while an instance answers.
	timer     *time.Timer
	watching  bool
	watchDone chan struct{}
	up        atomic.Pointer[upConn] // cancelled when the client goes away
	gone      atomic.Bool
	peek      [1]byte // a byte the watcher read (a pipelined request's)
	peeked    int
}

func (fc *frontConn) serve() {
	defer fc.finish()
	for {
		if !fc.readHead() {
			return
		}
		if fc.req.Unusual != "" {
			fc.handoff(fc.req.Unusual)
			return
		}
		if !fc.serveOne() || fc.req.Close || fc.f.closing.Load() || fc.f.draining.Load() {
			return
		}
	}
}

func (fc *frontConn) finish() {
	fc.f.untrack(fc)
	if !fc.handedOff {
		fc.c.Close()
	}
	if fc.timer != nil {
		fc.timer.Stop()
	}
}

// readHead reads until buf[r:] starts with a complete request head. It returns
// false when the connection is done: closed, timed out, or handed off.
func (fc *frontConn) readHead() bool {
	o := &fc.f.h.opts
	headDeadline := false
	for {
		if fc.r < fc.w {
			n, err := wire.ParseRequest(fc.buf[fc.r:fc.w], o.MaxHeaderBytes, &fc.req)
			if err == nil {
				fc.head = n
				return true
			}
			if err == wire.ErrTooLarge {
				fc.handoff("head too large") // net/http answers 431
				return false
			}
		}
		switch {
		case fc.r == fc.w: // waiting for a request: idle (shutdown may close it)
			fc.r, fc.w = 0, 0
			if fc.served > 0 {
				fc.rdl.set(fc.c, fc.now.Add(o.IdleTimeout)) // fc.now: the last response's end
			} else {
				fc.rdl.set(fc.c, time.Now().Add(o.ReadHeaderTimeout))
			}
			if !fc.state.CompareAndSwap(connActive, connIdle) {
				return false
			}
		case !headDeadline: // a head begun: it must end in time (slowloris)
			headDeadline = true
			fc.rdl.set(fc.c, time.Now().Add(o.ReadHeaderTimeout))
		}
		if !fc.fill(o.MaxHeaderBytes + 1) {
			return false
		}
		if !fc.state.CompareAndSwap(connIdle, connActive) && fc.state.Load() != connActive {
			return false // shutdown closed it while idle
		}
	}
}

// fill reads more into buf, growing it up to limit bytes from r. A head that
// was being parsed must be parsed again afterwards: buf may have moved.
func (fc *frontConn) fill(limit int) bool {
	if fc.w == len(fc.buf) {
		if n := fc.w - fc.r; fc.r > 0 && n < len(fc.buf)/2 {
			copy(fc.buf, fc.buf[fc.r:fc.w])
			fc.r, fc.w = 0, n
		} else {
			nb := make([]byte, min(max(2*len(fc.buf), 4<<10), limit+fc.w-fc.r))
			fc.w = copy(nb, fc.buf[fc.r:fc.w])
			fc.r, fc.buf = 0, nb
		}
	}
	n, err := fc.c.Read(fc.buf[fc.w:])
	fc.w += n
	return n > 0 || err == nil
}

// serveOne answers the request whose head is at buf[r:]. It returns false when
// the connection must close (or was handed off).
func (fc *frontConn) serveOne() bool {
	h := fc.f.h
	start := time.Now()
	fc.now = start
	cl := fc.req.ContentLength
	if cl > maxFastBody || (h.opts.MaxRequestBodyBytes > 0 && cl > h.opts.MaxRequestBodyBytes) {
		fc.handoff("large body")
		return false
	}
	var body []byte
	if cl > 0 {
		// Read the whole body first, as nginx does by default: then it can be sent
		// to another instance after a dial failure, and the exchange is one write.
		fc.rdl.set(fc.c, time.Now().Add(h.opts.IdleTimeout))
		for fc.w-fc.r < fc.head+int(cl) {
			moved := len(fc.buf) < fc.r+fc.head+int(cl)
			if !fc.fill(fc.head + int(cl)) {
				return false
			}
			if moved { // the head's strings point into the old buffer: parse it again
				if _, err := wire.ParseRequest(fc.buf[fc.r:fc.w], h.opts.MaxHeaderBytes, &fc.req); err != nil {
					return false
				}
			}
		}
		body = fc.buf[fc.r+fc.head : fc.r+fc.head+int(cl)]
	}
	slug, path, query, hasQuery, perr := slugpath.Parse(fc.req.Target)
	if perr != nil {
		fc.handoff("path") // net/http answers the error
		return false
	}
	rt := h.table.Load().routes[slug]
	if rt == nil || !rt.plain || len(rt.backends) == 0 {
		fc.handoff("route") // 404, 503, or instances net/http's Transport talks to
		return false
	}
	fc.scanFields()
	h.budget.deposit()
	code, abort := fc.forward(rt, path, query, hasQuery, body)
	fc.served++
	fc.now = time.Now()
	h.record(rt.m, code, fc.now.Sub(start), fc.req.Method, fc.req.Target, "HTTP/1.1", fc.remote, abort)
	fc.r += fc.head + max(int(cl), 0)
	if fc.r == fc.w && len(fc.buf) > 4<<10 {
		fc.buf, fc.r, fc.w = make([]byte, 4<<10), 0, 0 // a large head or body: don't keep its buffer while idle
	}
	return !abort
}

// scanFields collects what the upstream head needs besides the fields themselves.
func (fc *frontConn) scanFields() {
	fc.te, fc.xff = fc.te[:0], fc.xff[:0]
	fc.xfp, fc.xfh = false, false
	fc.idem = safeMethod(fc.req.Method)
	for _, f := range fc.req.Fields {
		switch fieldKind(f.Name) {
		case fieldHop:
			if wire.EqualFold(f.Name, "te") {
				fc.te = append(fc.te, f.Value)
			}
		case fieldXFF:
			fc.xff = append(fc.xff, f.Value)
		case fieldXFP:
			fc.xfp = true
		case fieldXFH:
			fc.xfh = true
		case fieldOther:
			if !fc.idem && wire.EqualFold(f.Name, "idempotency-key") {
				fc.idem = true
			}
		}
	}
}

func (fc *frontConn) clientHead() clientHead {
	return clientHead{conn: fc.req.Conn, te: fc.te, xff: fc.xff, hasXFP: fc.xfp, hasXFH: fc.xfh, remoteIP: fc.remoteIP, host: fc.req.Host}
}

// handoff gives the connection, from the start of the current request, to
// net/http. why is a fixed string (a metric label).
func (fc *frontConn) handoff(why string) {
	fc.f.h.metrics.handoffs.WithLabelValues(why).Inc()
	fc.handedOff = true
	fc.f.untrack(fc)
	_ = fc.c.SetDeadline(time.Time{})
	fc.f.slow.push(&prefixConn{Conn: fc.c, pre: bytes.Clone(fc.buf[fc.r:fc.w])})
}

// forward sends the request to the route's instances, retrying where that is
// safe, and relays the response. abort: the connection must be closed.
func (fc *frontConn) forward(rt *liveRoute, path, query string, hasQuery bool, body []byte) (code int, abort bool) {
	h := fc.f.h
	var kind errKind
	done := false
	rt.tryEach(h.opts.LBPolicy, func(b *backend, attempt int) (again bool) {
		var started bool // the response began: it cannot be replaced by another
		err := b.pool.attempt(bgCtx, body == nil && fc.idem, func(pc *upConn) (err error) {
			code, started, err = fc.exchange(pc, b.ep.Prefix, path, query, hasQuery, body)
			return err
		})
		switch {
		case err == nil:
			b.succeeded()
			done = true
		case fc.gone.Load() || errors.Is(err, errClientWrite):
			code, abort, done = codeClientGone, true, true
		case started:
			h.log.V(1).Info("response body broke", "slug", rt.slug, "error", err.Error())
			abort, done = true, true
		default:
			kind = classifyErr(err)
			return h.failed(rt, b, kind, attempt, err, body == nil || kind == errDial, fc.idem)
		}
		return false
	})
	if done {
		return code, abort
	}
	if kind == errTimeout {
		return fc.writeError(504, "upstream timed out", rt.slug), false
	}
	return fc.writeError(502, "upstream failed", rt.slug), false
}

// writeError answers with the proxy's own small JSON error.
func (fc *frontConn) writeError(code int, msg, slug string) int {
	body := errorJSON(msg, slug)
	out := appendStatusLine(fc.out[:0], code)
	out = append(out, "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n"...)
	out = appendDate(out)
	if fc.req.Close || fc.f.draining.Load() {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	out = append(out, body...)
	fc.out = out[:0]
	if _, err := fc.c.Write(out); err != nil {
		return codeClientGone
	}
	return code
}

// watch starts the timer that, if the instance is slow, watches the client.
func (fc *frontConn) watch(pc *upConn) {
	if fc.w > fc.r+fc.head+max(int(fc.req.ContentLength), 0) {
		return // the client already sent more (pipelining): it is there
	}
	fc.up.Store(pc)
	fc.watching = true
	if fc.timer == nil {
		fc.timer = time.AfterFunc(watchAfter, fc.watchClient)
	} else {
		fc.timer.Reset(watchAfter)
	}
}

// watchClient runs on the timer: a read that ends in EOF or an error means the
// client went away, and the instance's request is cancelled.
func (fc *frontConn) watchClient() {
	n, err := fc.c.Read(fc.peek[:])
	fc.peeked = n
	if n == 0 && err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			fc.gone.Store(true)
			if pc := fc.up.Load(); pc != nil {
				pc.cancel()
			}
		}
	}
	fc.watchDone <- struct{}{}
}

// unwatch stops watching; after it, nothing touches the upstream connection
// but the caller. It reports whether the client went away.
func (fc *frontConn) unwatch() bool {
	if !fc.watching {
		return false
	}
	fc.watching = false
	if !fc.timer.Stop() { // it fired: end its read
		fc.rdl.set(fc.c, aLongTimeAgo)
		<-fc.watchDone
		if fc.peeked == 1 {
			if fc.w == len(fc.buf) { // the current head's strings keep the old array alive
				nb := make([]byte, 2*len(fc.buf))
				copy(nb, fc.buf)
				fc.buf = nb
			}
			fc.buf[fc.w] = fc.peek[0]
			fc.w++
			fc.peeked = 0
		}
	}
	fc.up.Store(nil)
	return fc.gone.Load()
}

// prefixConn is a connection handed to net/http: it first reads back the bytes
// the front end had already read.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close the connection before closing it, as it
// does for TCP connections (so that the client reads an error response).
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// chanListener is the listener net/http serves handed-off connections from.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}
