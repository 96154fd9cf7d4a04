package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slugway/slugway/proxy/wire"
)

// forward sends the request to one of the route's backends, retrying where that
// is safe, and streams the response back. It returns the status answered.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, rt *liveRoute, path, query string, hasQuery bool) (int, bool) {
	ctx := r.Context()
	upgrade := upgradeType(r)
	if h.opts.RequestTimeout > 0 && upgrade == "" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.opts.RequestTimeout)
		defer cancel()
	}
	var body *trackedBody
	if r.Body != nil && r.Body != http.NoBody {
		rc := r.Body
		if h.opts.MaxRequestBodyBytes > 0 {
			rc = http.MaxBytesReader(w, rc, h.opts.MaxRequestBodyBytes)
		}
		body = &trackedBody{rc: rc}
	}
	var out *http.Request // for the Transport, built when first needed
	var u *url.URL

	var kind errKind
	code, abort, done := 0, false, false
	rt.tryEach(h.opts.LBPolicy, func(b *backend, attempt int) (again bool) {
		var resp *http.Response
		var err error
		if fastPathOK(r, b, upgrade, path, query) {
			resp, err = h.fastRoundTrip(ctx, b.pool, r, b.ep.Prefix, path, query, hasQuery, body)
		} else {
			if out == nil {
				u = new(url.URL)
				out = (&http.Request{
					Method:        r.Method,
					URL:           u,
					Proto:         "HTTP/1.1",
					ProtoMajor:    1,
					ProtoMinor:    1,
					Header:        h.outHeader(r, upgrade),
					ContentLength: r.ContentLength,
					Trailer:       r.Trailer,
				}).WithContext(ctx)
				if body != nil {
					out.Body = body
				}
			}
			*u = url.URL{Scheme: b.ep.Scheme, Host: b.ep.Host, Opaque: b.ep.Prefix + path, RawQuery: query, ForceQuery: hasQuery && query == ""}
			tr := b.transport
			if upgrade != "" {
				tr = h.h1 // upgrades are an HTTP/1.1 mechanism
			}
			resp, err = tr.RoundTrip(out)
		}
		if err == nil {
			b.succeeded()
			code, abort = h.respond(w, r, resp, upgrade) // still counted in flight
			done = true
			return false
		}
		kind = classify(r, err)
		done = true
		switch kind {
		case errClient:
			code = codeClientGone
		case errBodyTooLarge:
			code = writeError(w, http.StatusRequestEntityTooLarge, "request body too large", rt.slug)
		case errBody:
			code = writeError(w, http.StatusBadRequest, "reading the request body failed", rt.slug)
		default:
			done = false
			replayable := (body == nil || !body.touched.Load()) && ctx.Err() == nil
			return h.failed(rt, b, kind, attempt, err, replayable, idempotent(r.Method, r.Header))
		}
		return false
	})
	if done {
		return code, abort
	}
	if kind == errTimeout {
		return writeError(w, http.StatusGatewayTimeout, "upstream timed out", rt.slug), false
	}
	return writeError(w, http.StatusBadGateway, "upstream failed", rt.slug), false
}

// failed records a failed attempt at b and reports whether the request may be
// sent to another instance. replayable: nothing of its body was consumed.
func (h *Handler) failed(rt *liveRoute, b *backend, kind errKind, attempt int, err error, replayable, idempotent bool) bool {
	rt.m.upstreamError(kind.String())
	if kind == errDial || kind == errReset {
		b.eject(h.opts.EjectBase, h.opts.EjectMax)
	}
	h.log.V(1).Info("upstream attempt failed", "slug", rt.slug, "instance", *b.key.Load(), "kind", kind.String(), "attempt", attempt, "error", err.Error())
	if attempt >= h.opts.MaxRetries || !replayable {
		return false
	}
	// Dial failures never reached an instance: always safe. Other failures
	// before any response byte: only idempotent requests, within the budget.
	if kind != errDial && (kind == errTimeout || !idempotent || !h.budget.withdraw()) {
		return false
	}
	rt.m.retries.Inc()
	return true
}

// idempotent reports whether a request may be sent again after it may have
// reached an instance: safe methods, or an Idempotency-Key.
func idempotent(method string, hdr http.Header) bool {
	if safeMethod(method) {
		return true
	}
	_, ok := hdr["Idempotency-Key"]
	return ok
}

func safeMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// respond copies the upstream response to the client. abort is true when the
// body broke mid-stream: the client must see a broken response, not a short one.
func (h *Handler) respond(w http.ResponseWriter, r *http.Request, resp *http.Response, upgrade string) (int, bool) {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return h.switchProtocols(w, resp, upgrade), false
	}
	dst := w.Header()
	copyResponseHeader(dst, resp.Header)
	w.WriteHeader(resp.StatusCode)
	flush := resp.ContentLength < 0 || isEventStream(resp.Header)
	err := copyBody(w, resp.Body, flush)
	resp.Body.Close()
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
	if err != nil {
		if r.Context().Err() != nil {
			return codeClientGone, false
		}
		h.log.V(1).Info("response body broke", "error", err.Error())
		return resp.StatusCode, true
	}
	return resp.StatusCode, false
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams src to w. With flush, every chunk goes out as soon as it is
// read (server-sent events, gRPC, unknown lengths): nothing is buffered.
func copyBody(w http.ResponseWriter, src io.Reader, flush bool) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var f http.Flusher
	if flush {
		f, _ = w.(http.Flusher)
	}
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if f != nil {
				f.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream")
}

// switchProtocols completes an upgrade (WebSocket): it hands the client's
// connection over and copies bytes both ways until either side closes.
func (h *Handler) switchProtocols(w http.ResponseWriter, resp *http.Response, upgrade string) int {
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || !strings.EqualFold(resp.Header.Get("Upgrade"), upgrade) {
		resp.Body.Close()
		return writeError(w, http.StatusBadGateway, "upstream switched to an unexpected protocol", "")
	}
	defer back.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return writeError(w, http.StatusBadGateway, "cannot upgrade this connection", "")
	}
	defer conn.Close()
	h.hijacked.Store(conn, struct{}{})
	defer h.hijacked.Delete(conn)

	hdr := make(http.Header, len(resp.Header))
	copyResponseHeader(hdr, resp.Header)
	hdr["Connection"] = connUpgrade
	hdr["Upgrade"] = []string{upgrade}
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return http.StatusSwitchingProtocols
	}
	if err := hdr.Write(brw); err != nil {
		return http.StatusSwitchingProtocols
	}
	if _, err := brw.WriteString("\r\n"); err != nil || brw.Flush() != nil {
		return http.StatusSwitchingProtocols
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, back); done <- struct{}{} }()
	go func() { _, _ = io.Copy(back, brw.Reader); done <- struct{}{} }()
	<-done // either side closed: close both, which ends the other copy
	conn.Close()
	back.Close()
	<-done
	return http.StatusSwitchingProtocols
}

// upgradeType returns the protocol an HTTP/1.1 request asks to upgrade to, or "".
func upgradeType(r *http.Request) string {
	if r.ProtoMajor != 1 {
		return ""
	}
	up := r.Header["Upgrade"]
	if len(up) == 0 || !wire.HasToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	return up[0]
}

// isHopByHop reports whether a header field is for one connection only (RFC 9110 7.6.1), not forwarded.
func isHopByHop(k string) bool { return fieldKind(k) == fieldHop }

var (
	connUpgrade = []string{"Upgrade"}
	teTrailers  = []string{"trailers"}
	emptyUA     = []string{""}
	protoHTTP   = []string{"http"}
	protoHTTPS  = []string{"https"}
)

// outHeader builds the upstream request's headers: the client's, less hop-by-hop
// ones, plus X-Forwarded-For/-Proto/-Host. The client's X-Forwarded-* (and
// Forwarded) headers are kept only from trusted proxies. Values are shared, not copied.
func (h *Handler) outHeader(r *http.Request, upgrade string) http.Header {
	in := r.Header
	out := make(http.Header, len(in)+4)
	conn := in["Connection"]
	for k, vv := range in {
		if isHopByHop(k) || (len(conn) > 0 && wire.HasToken(conn, k)) {
			continue
		}
		out[k] = vv
	}
	if wire.HasToken(in["Te"], "trailers") {
		out["Te"] = teTrailers
	}
	if upgrade != "" {
		out["Connection"] = connUpgrade
		out["Upgrade"] = in["Upgrade"][:1]
	}
	if _, ok := in["User-Agent"]; !ok {
		out["User-Agent"] = emptyUA // keep it absent rather than Go's default
	}

	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	trusted := h.trusted(ip)
	if prior := in["X-Forwarded-For"]; trusted && len(prior) > 0 {
		out["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
	} else {
		out["X-Forwarded-For"] = []string{ip}
	}
	if !trusted || len(in["X-Forwarded-Proto"]) == 0 {
		if r.TLS != nil {
			out["X-Forwarded-Proto"] = protoHTTPS
		} else {
			out["X-Forwarded-Proto"] = protoHTTP
		}
	}
	if !trusted || len(in["X-Forwarded-Host"]) == 0 {
		out["X-Forwarded-Host"] = []string{r.Host}
	}
	if !trusted {
		delete(out, "Forwarded")
	}
	return out
}

// copyResponseHeader copies upstream response headers, less hop-by-hop ones.
func copyResponseHeader(dst, src http.Header) {
	conn := src["Connection"]
	for k, vv := range src {
		if isHopByHop(k) || (len(conn) > 0 && wire.HasToken(conn, k)) {
			continue
		}
		dst[k] = vv
	}
}

// trackedBody is the client's request body as sent upstream. It records whether
// any of it was read (a request whose body was consumed cannot be replayed), and
// ignores Close, which the transport calls after a failed attempt, so that a retry
// can still send it. The server closes the real body when the handler returns.
type trackedBody struct {
	rc      io.ReadCloser
	touched atomic.Bool // written by the fast path's body writer goroutine
}

var errClientBody = errors.New("reading the client's request body")

func (b *trackedBody) Read(p []byte) (int, error) {
	b.touched.Store(true)
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return n, err
		}
		return n, errors.Join(errClientBody, err)
	}
	return n, err
}

func (b *trackedBody) Close() error { return nil }

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// newTransports returns the HTTP/1.1 (and HTTP/2 over TLS) transport and the
// h2c (HTTP/2 with prior knowledge) one, both dialing through Options.Dial.
func newTransports(o Options) (h1, h2c http.RoundTripper) {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if o.DialTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.DialTimeout)
			defer cancel()
		}
		c, err := o.Dial(ctx, network, addr)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p1.SetHTTP2(true) // for https instances, by ALPN
	p2.SetUnencryptedHTTP2(true)
	t1 := &http.Transport{
		DialContext:           dial,
		Protocols:             &p1,
		MaxIdleConns:          0, // no global limit
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       o.UpstreamIdleTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
	t2 := &http.Transport{
		DialContext:           dial,
		Protocols:             &p2,
		IdleConnTimeout:       o.UpstreamIdleTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		DisableCompression:    true,
	}
	return t1, t2
}
