package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/slugway/slugway/proxy/framing"
	"github.com/slugway/slugway/proxy/wire"
)

// frontConn is one client connection on the front end.
type frontConn struct {
	f         *front
	c         net.Conn
	state     atomic.Int32
	handedOff bool
	now       time.Time // the current request's start, then its end (fewer clock reads)
	rdl       readDeadline
	served    int // requests answered on this connection

	buf  []byte // buf[r:w] is read and not yet consumed; the current head starts at r
	r, w int
	head int          // the current request head's length
	req  wire.Request // the current request's head, as parsed
	pr   request      // and as the pipeline sees it
	out  []byte       // the response head, and the body's first bytes
	sent bool         // bytes of the current response were written

	// Watching for the client going away while an instance answers.
	timer     *time.Timer
	watching  bool
	watchDone chan struct{}
	up        atomic.Pointer[upConn] // cancelled when the client goes away
	left      atomic.Bool            // the client went away
	peek      [1]byte                // a byte the watcher read (a pipelined request's)
	peeked    int
}

func (fc *frontConn) serve() {
	defer fc.finish()
	for {
		if !fc.readHead() {
			return
		}
		if e := fc.req.Reject; e != nil {
			fc.refuse(e)
			return
		}
		if fc.req.Unusual != "" {
			fc.handoff(fc.req.Unusual)
			return
		}
		if len(fc.req.Fields) > fc.f.h.opts.MaxHeaderCount {
			fc.handoff("header count") // net/http's side answers 431
			return
		}
		// Not draining here: a response whose head went out before the drain began said
		// keep-alive, and the client may already be sending its next request on this
		// connection. That one is answered with Connection: close (front_responder.go).
		if !fc.serveOne() || fc.pr.close || fc.f.closing.Load() {
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
	if cl > maxFastBody {
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
	pr := &fc.pr
	pr.method, pr.rawTarget, pr.host, pr.close = fc.req.Method, fc.req.Target, fc.req.Host, fc.req.Close
	pr.fields, pr.contentLength, pr.held, pr.start = fc.req.Fields, cl, body, start
	pr.scan()
	res := h.lookup(pr)
	if res.rt != nil && !res.rt.plain {
		fc.handoff("route") // instances net/http's Transport talks to
		return false
	}
	abort := h.pipeline(pr, res, fc)
	fc.served++
	fc.now = pr.end
	fc.r += fc.head + max(int(cl), 0)
	if fc.r == fc.w && len(fc.buf) > 4<<10 {
		fc.buf, fc.r, fc.w = make([]byte, 4<<10), 0, 0 // a large head or body: don't keep its buffer while idle
	}
	return !abort
}

// refuse answers a head wire refused (ambiguous framing or syntax: see
// wire.RequestError) with its status, and the connection closes after it:
// nothing after the head is read as a request.
func (fc *frontConn) refuse(e *wire.RequestError) {
	h := fc.f.h
	pr := &fc.pr
	pr.method, pr.rawTarget, pr.close, pr.start = fc.req.Method, fc.req.Target, true, time.Now()
	h.countRefused(e)
	if writeError(fc, e.Status, "refused: "+e.Reason+" (RFC 9112)", "") == codeClientGone {
		return
	}
	// As net/http does: half-close, then read what the client still sends for
	// a moment before closing, so that the close does not reset the connection
	// before the client has read the answer.
	if cw, ok := fc.c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = fc.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.Copy(io.Discard, io.LimitReader(fc.c, 256<<10))
	}
}

// handoff gives the connection, from the start of the current request, to
// net/http, behind a framing.Conn that holds its later requests to the same
// rules. why is a fixed string (a metric label).
func (fc *frontConn) handoff(why string) {
	h := fc.f.h
	h.metrics.handoffs.WithLabelValues(why).Inc()
	fc.handedOff = true
	fc.f.untrack(fc)
	_ = fc.c.SetDeadline(time.Time{})
	c := framing.NewConn(&prefixConn{Conn: fc.c, pre: bytes.Clone(fc.buf[fc.r:fc.w])}, framing.MaxHead(h.opts.MaxHeaderBytes))
	c.OnRefuse = h.countRefused
	fc.f.slow.push(c)
}

// watch starts the timer that, if the instance is slow, watches the client.
func (fc *frontConn) watch(_ *request, pc *upConn) {
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
			fc.left.Store(true)
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
	return fc.left.Load()
}
