package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/slugway/slugway/proxy/wire"
)

// The HTTP/1.1 fast path. Plain HTTP/1.1 requests to http:// instances skip
// net/http's Transport: the handler's goroutine takes a pooled connection, writes
// the request line and headers straight into the connection's buffer (no header
// map is built) and parses the response with http.ReadResponse itself. Transport
// hands every request to two per-connection goroutines (persistConn's readLoop
// and writeLoop) and back, which costed about a tenth of the proxy's CPU.
//
// A request body is written by a second goroutine while the response is read, as
// Transport does, so that an instance may answer before it read the whole body.
//
// Everything unusual takes the Transport: upgrades (WebSocket), h2c and https
// instances, requests with trailers, and Expect: 100-continue.

// aLongTimeAgo is a deadline in the past: it makes blocked reads and writes return at once.
var aLongTimeAgo = time.Unix(1, 0)

// upstreamPool keeps idle HTTP/1.1 connections to one instance, most recently
// used first, so that a busy instance's connections stay warm and the rest age out.
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
	body      fastBody
}

// countingReader counts the bytes read from the connection, so that a failure
// can tell "the instance closed a pooled connection before answering" (safe to
// retry for idempotent requests) from a failure partway through a response.
type countingReader struct {
	c     net.Conn
	n     int64
	limit int64 // while reading response headers: fail past this many bytes (0: none)
}

// maxResponseHeaderBytes bounds an instance's response headers, 1xx included, as
// Transport's MaxResponseHeaderBytes default does.
var maxResponseHeaderBytes int64 = 10 << 20

var errHeadersTooLarge = errors.New("the instance's response headers are too large")

func (r *countingReader) Read(p []byte) (int, error) {
	if r.limit > 0 && r.n >= r.limit {
		return 0, errHeadersTooLarge
	}
	n, err := r.c.Read(p)
	r.n += int64(n)
	return n, err
}

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

// upstreamDialer applies DialTimeout and marks failures as dial errors (never reached the instance).
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

// get returns an idle connection, or dials one. checkAlive asks to verify that a
// pooled connection was not closed by the instance while idle (for requests that
// cannot be retried if it was).
func (p *upstreamPool) get(ctx context.Context, checkAlive bool) (*upConn, error) {
	now := time.Now()
	for {
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
		if now.Sub(pc.idleSince) >= p.idleTimeout || (checkAlive && !connAlive(pc.c)) {
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
	pc.br = bufio.NewReaderSize(&pc.cr, 16<<10)
	pc.bw = bufio.NewWriterSize(c, 8<<10)
	return pc, nil
}

// put returns a connection whose last exchange completed cleanly.
func (p *upstreamPool) put(pc *upConn) {
	pc.idleSince = time.Now()
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

var errUnexpected101 = errors.New("the instance switched protocols on a request that did not ask to")

// max1xx is how many informational (1xx) responses are skipped before a final one, as Transport does.
const max1xx = 5

var errTooMany1xx = errors.New("the instance sent too many 1xx responses")

// fastRoundTrip sends r to the pool's instance over HTTP/1.1 and returns the
// response, whose Body must be closed. A pooled connection that turns out to be
// closed by the instance is replaced by a fresh one for idempotent requests without a body.
func (h *Handler) fastRoundTrip(ctx context.Context, p *upstreamPool, r *http.Request, target1, target2, query string, hasQuery bool, body *trackedBody) (*http.Response, error) {
	var resp *http.Response
	err := p.attempt(ctx, body == nil && idempotent(r.Method, r.Header), func(pc *upConn) (err error) {
		resp, err = h.exchange(ctx, pc, r, target1, target2, query, hasQuery, body)
		return err
	})
	return resp, err
}

// attempt runs exchange on a pooled connection. When a reused connection turns
// out to have been closed by the instance before it answered anything, a
// replayable request (no body, idempotent) runs again on a fresh one.
func (p *upstreamPool) attempt(ctx context.Context, replayable bool, exchange func(*upConn) error) error {
	for stale := 0; ; stale++ {
		pc, err := p.get(ctx, !replayable)
		if err != nil {
			return err
		}
		err = exchange(pc)
		if err == nil {
			return nil
		}
		if replayable && pc.reused && pc.cr.n == 0 && ctx.Err() == nil && stale < 2 && isStaleConnErr(err) {
			continue
		}
		return err
	}
}

func isStaleConnErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)
}

// exchange writes one request on pc and reads the response headers. On error
// the connection is closed.
func (h *Handler) exchange(ctx context.Context, pc *upConn, r *http.Request, target1, target2, query string, hasQuery bool, body *trackedBody) (*http.Response, error) {
	c := pc.c
	pc.cr.n = 0
	pc.cr.limit = maxResponseHeaderBytes
	stop := context.AfterFunc(ctx, pc.cancel)
	fail := func(err error) (*http.Response, error) {
		stop()
		c.Close()
		return nil, err
	}
	bw := pc.bw
	writeRequestLine(bw, r.Method, target1, target2, query, hasQuery, pc.pool.host)
	if err := h.writeOutHeader(bw, r); err != nil {
		return fail(err)
	}
	chunked := body != nil && r.ContentLength < 0
	writeFraming(bw, r.Method, body != nil, r.ContentLength)

	var wrote chan error // the body writer's result
	if body == nil {
		if err := bw.Flush(); err != nil {
			return fail(err)
		}
	} else {
		wrote = make(chan error, 1)
		go writeBody(pc, body, r.ContentLength, chunked, wrote)
	}

	if t := h.opts.ResponseHeaderTimeout; t > 0 {
		pc.rdl.set(c, time.Now().Add(t))
	}
	var resp *http.Response
	var err error
	for n1xx := 0; ; n1xx++ {
		resp, err = http.ReadResponse(pc.br, r)
		if err != nil {
			if wrote != nil {
				// The body writer reports a broken client body before it closes
				// the connection; it may also still wait on the client: don't wait.
				select {
				case werr := <-wrote:
					if werr != nil && (errors.Is(werr, errClientBody) || isMaxBytes(werr)) {
						err = werr // the client's body broke, not the instance
					}
				default:
				}
			}
			return fail(fmt.Errorf("reading the instance's response: %w", err))
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			return fail(errUnexpected101)
		}
		if code >= 200 || code < 100 {
			break
		}
		if n1xx >= max1xx {
			return fail(errTooMany1xx)
		}
	}
	pc.cr.limit = 0
	// Lift the header deadline for the body, unless the body is already all in
	// the buffer (small responses): then nothing reads the connection before the
	// next exchange sets its own deadline, and a timer update is saved.
	if h.opts.ResponseHeaderTimeout > 0 && (resp.ContentLength < 0 || int64(pc.br.Buffered()) < resp.ContentLength || resp.Body == http.NoBody) {
		pc.rdl.set(c, time.Time{})
		if ctx.Err() != nil {
			_ = c.SetDeadline(aLongTimeAgo) // cancelled meanwhile: don't undo it
		}
	}
	pc.body = fastBody{rc: resp.Body, pc: pc, stop: stop, wrote: wrote, keep: !resp.Close}
	resp.Body = &pc.body // one exchange at a time per connection: reuse its body
	return resp, nil
}

// writeRequestLine writes "METHOD target1target2[?query] HTTP/1.1" and the Host field.
func writeRequestLine(bw *bufio.Writer, method, target1, target2, query string, hasQuery bool, host string) {
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(target1)
	bw.WriteString(target2)
	if hasQuery {
		bw.WriteByte('?')
		bw.WriteString(query)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
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

func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// writeBody sends the request body (exactly n bytes, or chunked) and reports
// the result on done. On error it closes the connection, which also ends the
// response read.
func writeBody(pc *upConn, body *trackedBody, n int64, chunked bool, done chan<- error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	bw := pc.bw
	var err error
	if chunked {
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
			if err = cw.Close(); err == nil {
				_, err = bw.WriteString("\r\n")
			}
		}
	} else {
		var m int64
		m, err = io.CopyBuffer(bw, io.LimitReader(onlyReader{body}, n), buf)
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

// onlyReader hides WriterTo/ReaderFrom so that io.CopyBuffer uses the pooled buffer.
type onlyReader struct{ io.Reader }

// fastBody is a response body on the fast path. Closing it returns the
// connection to the pool when the exchange completed cleanly, else closes it.
type fastBody struct {
	rc    io.ReadCloser
	pc    *upConn
	stop  func() bool
	wrote chan error
	keep  bool // the instance did not ask to close
	eof   bool
	done  bool
}

func (b *fastBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *fastBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	pc := b.pc
	reuse := b.eof && b.keep && b.stop()
	if reuse && b.wrote != nil {
		select {
		case err := <-b.wrote:
			reuse = err == nil
		default:
			reuse = false // the instance answered before reading the whole body
		}
	}
	if !reuse || pc.br.Buffered() > 0 {
		b.stop()
		pc.c.Close()
		return nil
	}
	pc.pool.put(pc)
	return nil
}

// writeOutHeader writes the upstream request's header fields, the same set
// outHeader builds for the Transport (which the tests check), without building
// a map. Host, Content-Length and Transfer-Encoding are the caller's.
func (h *Handler) writeOutHeader(bw *bufio.Writer, r *http.Request) error {
	in := r.Header
	ch := clientHead{
		conn: in["Connection"], te: in["Te"], xff: in["X-Forwarded-For"],
		hasXFP: len(in["X-Forwarded-Proto"]) > 0, hasXFH: len(in["X-Forwarded-Host"]) > 0,
		remoteIP: remoteIP(r.RemoteAddr), host: r.Host, tls: r.TLS != nil,
	}
	var arr [24]wire.Field // on the stack for up to 24 field lines
	fields := arr[:0]
	for k, vv := range in {
		for _, v := range vv {
			fields = append(fields, wire.Field{Name: k, Value: v})
		}
	}
	return h.writeFields(bw, &ch, fields)
}

// clientHead is what the upstream request head takes from the client's request
// besides its fields, whichever server parsed it (net/http or the fast front end).
type clientHead struct {
	conn, te, xff  []string // the Connection, TE and X-Forwarded-For values
	hasXFP, hasXFH bool     // X-Forwarded-Proto / -Host present
	remoteIP, host string
	tls            bool
}

// writeFields writes the client's header fields less hop-by-hop ones (those
// named in Connection too) plus X-Forwarded-For/-Proto/-Host. The client's
// X-Forwarded-* and Forwarded fields are kept only from trusted proxies. Field
// names are matched case-insensitively, so fields may come canonicalized
// (net/http) or as sent (the fast front end).
func (h *Handler) writeFields(bw *bufio.Writer, ch *clientHead, fields []wire.Field) error {
	trusted := h.trusted(ch.remoteIP)
	keepProto := trusted && ch.hasXFP
	keepHost := trusted && ch.hasXFH
	var err error
	ua := false
	for _, f := range fields {
		k, v := f.Name, f.Value
		switch fieldKind(k) {
		case fieldHop, fieldHost, fieldContentLength, fieldXFF:
			continue
		case fieldUserAgent:
			first := !ua
			ua = true
			if !first || v == "" {
				continue // Transport sends the first one, if not empty
			}
		case fieldXFP:
			if !keepProto {
				continue
			}
		case fieldXFH:
			if !keepHost {
				continue
			}
		case fieldForwarded:
			if !trusted {
				continue
			}
		}
		if len(ch.conn) > 0 && wire.HasToken(ch.conn, k) {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			err = fmt.Errorf("invalid request header field name %q", k)
			break
		}
		writeField(bw, k, v)
	}
	if err != nil {
		return err
	}
	if wire.HasToken(ch.te, "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	bw.WriteString("X-Forwarded-For: ")
	if trusted && len(ch.xff) > 0 {
		for _, v := range ch.xff {
			writeValue(bw, v)
			bw.WriteString(", ")
		}
	}
	bw.WriteString(ch.remoteIP)
	bw.WriteString("\r\n")
	if !keepProto {
		if ch.tls {
			bw.WriteString("X-Forwarded-Proto: https\r\n")
		} else {
			bw.WriteString("X-Forwarded-Proto: http\r\n")
		}
	}
	if !keepHost {
		writeField(bw, "X-Forwarded-Host", ch.host)
	}
	return nil
}

// Kinds of header fields the proxy treats specially.
const (
	fieldOther = iota
	fieldHop   // hop-by-hop (RFC 9110 7.6.1): for one connection only
	fieldHost
	fieldContentLength
	fieldUserAgent
	fieldXFF
	fieldXFP
	fieldXFH
	fieldForwarded
)

// specialFields are the header fields the proxy treats specially, by kind.
var specialFields = [...]struct {
	name string
	kind int
}{
	{"connection", fieldHop}, {"proxy-connection", fieldHop}, {"keep-alive", fieldHop},
	{"proxy-authenticate", fieldHop}, {"proxy-authorization", fieldHop}, {"te", fieldHop},
	{"trailer", fieldHop}, {"transfer-encoding", fieldHop}, {"upgrade", fieldHop},
	{"host", fieldHost}, {"content-length", fieldContentLength}, {"user-agent", fieldUserAgent},
	{"x-forwarded-for", fieldXFF}, {"x-forwarded-proto", fieldXFP}, {"x-forwarded-host", fieldXFH},
	{"forwarded", fieldForwarded},
}

// fieldKind classifies a header field name, case-insensitively.
func fieldKind(k string) int {
	for _, f := range specialFields {
		if len(f.name) == len(k) && wire.EqualFold(k, f.name) {
			return f.kind
		}
	}
	return fieldOther
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	writeValue(bw, v)
	bw.WriteString("\r\n")
}

// writeValue writes a header value with CR and LF turned into spaces, as
// http.Header.Write does (the servers reject them already; this is a second fence).
func writeValue(bw *bufio.Writer, v string) {
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		bw.WriteString(v)
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		bw.WriteByte(c)
	}
}

func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// fastPathOK reports whether a request can take the HTTP/1.1 fast path to b.
func fastPathOK(r *http.Request, b *backend, upgrade, path, query string) bool {
	if b.pool == nil || upgrade != "" || r.Trailer != nil {
		return false
	}
	// A target with spaces or control bytes can only come from an HTTP/2 client
	// (HTTP/1.1's request line cannot hold them): the Transport decides, as before.
	if !plainTarget(path) || !plainTarget(query) {
		return false
	}
	if _, ok := r.Header["Expect"]; ok {
		return false // Transport's ExpectContinueTimeout handling
	}
	return true
}

func plainTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
