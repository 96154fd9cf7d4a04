package proxy

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slugway/slugway/proxy/framing"
	"github.com/slugway/slugway/proxy/limits"
	"github.com/slugway/slugway/proxy/wire"
)

// net/http's side of the pipeline: ServeHTTP fills a request from an
// *http.Request and answers through an httpResponder. net/http serves the TLS
// listener, h2c, and every connection the front end hands over.

// ServeHTTP runs the pipeline for one request net/http parsed.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hr := &httpResponder{w: w, r: r}
	defer hr.dl.end()
	req := h.newRequest(w, r, &hr.dl)
	if len(req.fields) > h.opts.MaxHeaderCount {
		h.pipeline(req, routed{sm: h.unknown, code: http.StatusRequestHeaderFieldsTooLarge,
			msg: "too many header fields: the limit is " + strconv.Itoa(h.opts.MaxHeaderCount)}, hr)
		return
	}
	if h.opts.RequestTimeout > 0 && req.upgrade == "" {
		var cancel context.CancelFunc
		req.ctx, cancel = context.WithTimeout(req.ctx, h.opts.RequestTimeout)
		defer cancel()
	}
	if h.pipeline(req, h.lookup(req), hr) {
		panic(http.ErrAbortHandler) // the upstream body broke: break the client's response too
	}
}

// newRequest is the pipeline's view of r. Header fields are listed from the
// map (on the stack for up to 24 field lines). A streamed body's read deadline
// goes through dl, which ServeHTTP ends when it returns.
func (h *Handler) newRequest(w http.ResponseWriter, r *http.Request, dl *handlerDeadline) *request {
	req := &request{
		method:        r.Method,
		rawTarget:     r.RequestURI,
		host:          r.Host,
		proto:         r.Proto,
		remote:        r.RemoteAddr,
		remoteIP:      remoteIP(r.RemoteAddr),
		tls:           framing.TLSState(r.Context(), r.TLS) != nil,
		upgrade:       h.allowedUpgrade(upgradeType(r)),
		trailers:      r.Trailer != nil,
		start:         time.Now(),
		contentLength: r.ContentLength,
		ctx:           r.Context(),
	}
	if r.TLS != nil {
		req.sni = r.TLS.ServerName
	}
	n := 0
	for _, vv := range r.Header {
		n += len(vv)
	}
	req.fields = make([]wire.Field, 0, n)
	for k, vv := range r.Header {
		for _, v := range vv {
			req.fields = append(req.fields, wire.Field{Name: k, Value: v})
		}
	}
	req.scan()
	if r.Body != nil && r.Body != http.NoBody {
		rc := r.Body
		if h.opts.MaxRequestBodyBytes > 0 {
			rc = http.MaxBytesReader(w, rc, h.opts.MaxRequestBodyBytes)
		}
		if r.ContentLength < 0 || r.ContentLength > maxFastBody {
			// A streamed body: every read must come within BodyIdleTimeout.
			dl.rc = http.NewResponseController(w)
			rc = idleBody{&limits.IdleReader{R: rc, Idle: h.opts.BodyIdleTimeout, SetDeadline: dl.set}, rc}
		}
		req.stream = &trackedBody{rc: rc}
	}
	return req
}

// httpResponder answers through net/http's ResponseWriter, decoded bodies only.
type httpResponder struct {
	w      http.ResponseWriter
	r      *http.Request
	status int             // the instance's status, written with the first body bytes
	sent   bool            // WriteHeader was called
	stream bool            // flush after every piece (unknown length, server-sent events)
	stop   func() bool     // stops watching the request's context
	out    *http.Request   // the Transport's request, built once per request
	dl     handlerDeadline // a streamed body's read deadline (here: no allocation of its own)
}

func (hr *httpResponder) raw() bool { return false }

// writeHead sets the instance's fields that dropResponseField keeps (copied:
// the parsed strings point into the connection's buffer) and keeps the status
// for commit.
func (hr *httpResponder) writeHead(req *request, _ []byte, mode bodyMode) {
	resp := &req.resp
	dst := hr.w.Header()
	for _, f := range resp.Fields {
		if dropResponseField(f.Name, resp.Conn, resp.Chunked, false) {
			continue
		}
		// Copies, names too (CanonicalHeaderKey returns a canonical name as
		// it is): net/http writes them after the connection went back to the pool.
		k := strings.Clone(http.CanonicalHeaderKey(f.Name))
		dst[k] = append(dst[k], strings.Clone(f.Value))
	}
	hr.stream = mode == bodyChunked || mode == bodyClose || isEventStream(dst)
	hr.status = resp.Status
	if mode == bodyNone || hr.stream {
		hr.commit() // nothing to wait for, or the client should see the head at once
	}
}

// commit writes the status: from then on, nothing can replace the response.
func (hr *httpResponder) commit() {
	if !hr.sent {
		hr.sent = true
		hr.w.WriteHeader(hr.status)
	}
}

func (hr *httpResponder) started() bool { return hr.sent }

func (hr *httpResponder) write(p []byte) error {
	hr.commit()
	if _, err := hr.w.Write(p); err != nil {
		return errClientWrite
	}
	return nil
}

func (hr *httpResponder) flush() error {
	if hr.stream {
		hr.commit()
		if f, ok := hr.w.(http.Flusher); ok {
			f.Flush()
		}
	}
	return nil
}

// trailers sets the response's trailers after its body.
func (hr *httpResponder) trailers(tr http.Header) {
	dst := hr.w.Header()
	for k, vv := range tr {
		dst[http.TrailerPrefix+k] = vv
	}
}

func (hr *httpResponder) answer(code int, fields []wire.Field, body []byte) int {
	hdr := hr.w.Header()
	clear(hdr) // an instance's head not yet sent gives way
	for _, f := range fields {
		hdr[f.Name] = []string{f.Value}
	}
	hr.w.WriteHeader(code)
	_, _ = hr.w.Write(body)
	return code
}

// watch cancels pc when the request's context ends (the client went away, or
// --request-timeout passed).
func (hr *httpResponder) watch(req *request, pc *upConn) {
	hr.stop = context.AfterFunc(req.ctx, pc.cancel)
}

func (hr *httpResponder) unwatch() bool {
	if hr.stop == nil {
		return false
	}
	stopped := hr.stop()
	hr.stop = nil
	return !stopped
}

func (hr *httpResponder) gone() bool { return hr.r.Context().Err() != nil }

func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream")
}

// idleBody is a streamed request body read through a limits.IdleReader.
type idleBody struct {
	*limits.IdleReader
	c io.Closer
}

func (b idleBody) Close() error { return b.c.Close() }

// handlerDeadline is the handler's SetReadDeadline for as long as ServeHTTP
// runs. The upstream client may still read the body after that, in a goroutine
// of its own (the HTTP/2 Transport's body writer, until the stream's reset
// reaches it), and net/http's HTTP/2 ResponseWriter panics when its deadline is
// set after the handler returned; the HTTP/1.1 one would move the deadline of
// the connection's next request.
type handlerDeadline struct {
	mu    sync.Mutex
	rc    *http.ResponseController
	ended bool
}

func (d *handlerDeadline) set(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended {
		return http.ErrBodyReadAfterClose
	}
	return d.rc.SetReadDeadline(t)
}

// end is called when ServeHTTP returns: no deadline is set after it.
func (d *handlerDeadline) end() {
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
}
