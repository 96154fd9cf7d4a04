package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slugway/slugway/proxy/wire"
)

// The upstream client: the one hand-rolled HTTP/1.1 client, for both servers'
// requests to http:// instances. The request's goroutine takes a pooled
// connection, writes the request line and header fields straight into the
// connection's buffer (no header map), parses the response head in place
// (package wire, at most MaxResponseHeaderBytes, 1xx responses skipped) and
// relays the response (relay.go). A streamed request body is written by a
// second goroutine while the response is read, so that an instance may answer
// before it read the whole body. net/http's Transport is used only where it
// must be (transport.go).

// max1xx is how many informational (1xx) responses are skipped before a final one.
const max1xx = 5

// roundTrip sends req to p's instance and relays the response to rw. When a
// reused connection turns out dead before any response byte arrived (EOF or a
// reset: the instance closed it, idle or restarting), the request goes again
// on a fresh connection to the same instance, as nginx does for cached
// keep-alive connections. That is not a failed attempt: no ejection, no retry
// budget. It is done for idempotent requests without a streamed body; the
// others had their connection checked before use (get's checkAlive).
func (h *Handler) roundTrip(p *upstreamPool, req *request, prefix string, rw responder, sm *slugMetrics) (code int, started bool, err error) {
	replaceStale := req.idempotent && req.stream == nil
	fresh := false
	for {
		pc, err := p.get(req.ctx, fresh, !replaceStale)
		if err != nil {
			return 0, false, err
		}
		code, started, err = h.exchange(pc, req, prefix, rw)
		if err == nil || started || fresh || !replaceStale || !pc.reused || pc.cr.n != 0 || !isStaleConnErr(err) || rw.gone() {
			return code, started, err
		}
		sm.upstreamError("stale")
		p.dropDead()
		fresh = true
	}
}

// exchange sends req on pc and relays the response. started reports that the
// response began (the request can no longer go elsewhere). pc goes back to the
// pool only after a clean exchange; on error it is closed.
func (h *Handler) exchange(pc *upConn, req *request, prefix string, rw responder) (code int, started bool, err error) {
	pc.cr.n, pc.cr.limit = 0, 0
	req.done, req.wrote = false, nil
	bw := pc.bw
	if err := h.writeRequestHead(bw, req, prefix, pc.pool.host); err != nil {
		pc.c.Close()
		return 0, false, err
	}
	if req.stream != nil {
		req.wrote = make(chan error, 1)
		go writeBody(pc, req.stream, req.contentLength, req.wrote)
	} else {
		bw.Write(req.held)
		if err := bw.Flush(); err != nil {
			pc.c.Close()
			return 0, false, err
		}
	}
	rw.watch(req, pc)
	if t := h.opts.ResponseHeaderTimeout; t > 0 {
		pc.rdl.set(pc.c, req.start.Add(t))
	}
	head, err := h.readResponseHead(pc, req)
	if err != nil {
		err = req.bodyErr(err)
		h.release(pc, req, rw, false)
		return 0, false, err
	}
	started, err = h.relay(pc, req, head, rw)
	if !req.done {
		h.release(pc, req, rw, false)
	}
	return req.resp.Status, started, err
}

// release ends the exchange on pc: it stops watching the client and returns pc
// to the pool when the exchange was clean (and the request body all sent),
// else closes it.
func (h *Handler) release(pc *upConn, req *request, rw responder, clean bool) {
	req.done = true
	if rw.unwatch() { // the client went away: pc's deadline was expired
		clean = false
	}
	if clean && req.wrote != nil {
		clean = req.bodySent(pc)
	}
	if clean && pc.br.Buffered() == 0 {
		pc.pool.put(pc)
	} else {
		pc.c.Close()
	}
}

// bodySent reports whether the streamed request body was all sent, once the
// instance's whole response was read. The body writer may not have reported yet
// even when it has sent everything: the instance can read the last bytes and
// answer before the writer's goroutine runs again after its Flush. So when the
// writer took the whole body from the client it is waited for (it no longer
// waits on the client, only on the instance; a write the instance won't take is
// cut short by expiring the write deadline, and then the connection is closed).
// A writer still reading the client's body means the instance answered before
// the body was all there: the connection's framing is lost, it is closed.
func (req *request) bodySent(pc *upConn) bool {
	select {
	case err := <-req.wrote:
		return err == nil
	default:
	}
	if !req.stream.read.Load() {
		return false // the instance answered before reading the whole body
	}
	_ = pc.c.SetWriteDeadline(time.Now())
	if err := <-req.wrote; err != nil {
		return false
	}
	return pc.c.SetWriteDeadline(time.Time{}) == nil
}

// bodyErr prefers the client's body error to err when the body writer saw one:
// then the client's body broke, not the instance.
func (req *request) bodyErr(err error) error {
	if req.wrote == nil {
		return err
	}
	// The body writer reports a broken client body before it closes the
	// connection; it may also still wait on the client: don't wait.
	select {
	case werr := <-req.wrote:
		if werr != nil && (errors.Is(werr, errClientBody) || isMaxBytes(werr)) {
			return werr
		}
		req.wrote <- werr // for release
	default:
	}
	return err
}

// writeRequestHead writes "METHOD target HTTP/1.1", Host, the fields by the
// request-header policy, and the body's framing.
func (h *Handler) writeRequestHead(bw *bufio.Writer, req *request, prefix, host string) error {
	bw.WriteString(req.method)
	bw.WriteByte(' ')
	req.target.write(bw, prefix)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if err := h.rewriteRequestHeader(req, (*wireHeader)(bw)); err != nil {
		return err
	}
	n := req.contentLength
	if req.held != nil {
		n = int64(len(req.held))
	}
	writeFraming(bw, req.method, req.hasBody(), n)
	return nil
}

// writeFraming writes the body's framing fields and ends the head: Content-Length
// (n >= 0), chunked (n < 0), or for a request without body, Content-Length: 0
// where the method implies a body.
func writeFraming(bw *bufio.Writer, method string, hasBody bool, n int64) {
	switch {
	case !hasBody:
		switch method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			bw.WriteString("Content-Length: 0\r\n")
		}
	case n >= 0:
		bw.WriteString("Content-Length: ")
		var nb [20]byte
		bw.Write(strconv.AppendInt(nb[:0], n, 10))
		bw.WriteString("\r\n")
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
}

// readResponseHead reads the final response head into req.resp and returns its
// bytes (valid until pc.br is read again), skipping informational ones.
func (h *Handler) readResponseHead(pc *upConn, req *request) ([]byte, error) {
	resp := &req.resp
	for n1xx := 0; ; n1xx++ {
		head, err := readHead(pc, resp, h.opts.MaxResponseHeaderBytes)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.Status == http.StatusSwitchingProtocols:
			return nil, errUnexpected101
		case resp.Status >= 200:
			return head, nil
		case n1xx >= max1xx:
			return nil, errTooMany1xx
		}
		_, _ = pc.br.Discard(len(head))
	}
}

// readHead reads until pc.br holds a complete response head of at most limit
// bytes and parses it. A head larger than the connection's buffer grows the
// buffer (put gives it back).
func readHead(pc *upConn, resp *wire.Response, limit int) ([]byte, error) {
	for {
		br := pc.br
		b, _ := br.Peek(br.Buffered())
		if len(b) > 0 {
			n, err := wire.ParseResponse(b, limit, resp)
			switch err {
			case nil:
				return b[:n], nil
			case wire.ErrTooLarge:
				return nil, errHeadersTooLarge
			case wire.ErrIncomplete:
			default:
				return nil, err
			}
		}
		if len(b) == br.Size() {
			if br.Size() >= limit {
				return nil, errHeadersTooLarge
			}
			pc.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), &pc.cr), limit)
			continue
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return nil, err
		}
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeBody sends a streamed request body (exactly n bytes, or chunked) and
// reports the result on done. On error it closes the connection, which also
// ends the response read.
func writeBody(pc *upConn, body *trackedBody, n int64, done chan<- error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	bw := pc.bw
	var err error
	if n < 0 {
		cw := httputil.NewChunkedWriter(bw)
		for err == nil {
			m, rerr := body.Read(buf)
			if m > 0 {
				if _, err = cw.Write(buf[:m]); err == nil {
					err = bw.Flush() // a stream: the instance sees each piece as it comes
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil && err == nil {
				err = rerr
			}
		}
		if err == nil {
			body.read.Store(true) // before the last chunk goes: see bodySent
			if err = cw.Close(); err == nil {
				_, err = bw.WriteString("\r\n")
			}
		}
	} else {
		var m int64
		m, err = io.CopyBuffer(bw, &lastRead{body: body, n: n}, buf)
		if err == nil && m < n {
			err = errors.Join(errClientBody, io.ErrUnexpectedEOF)
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		done <- err
		pc.c.Close()
		return
	}
	done <- nil
}

// lastRead reads the first n bytes of body and marks the body read before it
// returns the last of them, so before they can reach the instance (bodySent).
// (bw is a ReaderFrom, so io.CopyBuffer hands the copy to bw.ReadFrom; the
// mark does not depend on which buffer carries the bytes.)
type lastRead struct {
	body *trackedBody
	n    int64
}

func (r *lastRead) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	m, err := r.body.Read(p)
	r.n -= int64(m)
	if r.n == 0 {
		r.body.read.Store(true)
	}
	return m, err
}

// trackedBody is the client's streamed request body. It records whether any of
// it was read (a request whose body was consumed cannot be replayed), and
// ignores Close, which the Transport calls after a failed attempt, so that a
// retry can still send it. The server closes the real body when the handler returns.
type trackedBody struct {
	rc      io.ReadCloser
	touched atomic.Bool // written by the body writer's goroutine
	read    atomic.Bool // all of it was taken from the client (set by the body writer)
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.touched.Store(true)
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		if isMaxBytes(err) {
			return n, err
		}
		return n, errors.Join(errClientBody, err)
	}
	return n, err
}

func (b *trackedBody) Close() error { return nil }
