package proxy

import (
	"bufio"
	"context"
	"time"

	"github.com/slugway/slugway/proxy/slugpath"
	"github.com/slugway/slugway/proxy/wire"
)

// request is one client request as the pipeline sees it, whichever server parsed
// it: the front end fills it from the raw head (its strings point into the
// connection's read buffer, and one request value is reused per connection),
// net/http's side from an *http.Request. Every step after parsing reads only this.
type request struct {
	method    string
	rawTarget string // as the client sent it (logs)
	target    target
	host      string
	sni       string // the TLS server name (net/http's side, on --tls-listen)
	proto     string // "HTTP/1.1", "HTTP/2.0", ...
	remote    string // the peer's address
	remoteIP  string
	tls       bool
	close     bool   // the client's connection ends after this response
	upgrade   string // the protocol an HTTP/1.1 upgrade asks for, or ""
	start     time.Time
	end       time.Time // set by observe
	trace     *reqTrace // the request's span (tracing.go); nil with tracing off

	// fields are the header fields as received (Host included or not); scan
	// fills the rest from them.
	fields         []wire.Field
	conn, te, xff  []string // the Connection, TE and X-Forwarded-For values
	hasXFP, hasXFH bool     // X-Forwarded-Proto / -Host present
	hasXRealIP     bool     // X-Real-IP present
	expect         bool     // an Expect field
	trailers       bool     // it declares request trailers (net/http)
	idempotent     bool     // it may be sent again after it may have reached an instance

	// The body: held whole (the front end reads small bodies first), streamed
	// from the client (net/http), or none (both nil).
	contentLength int64 // -1: unknown (chunked)
	held          []byte
	stream        *trackedBody

	// ctx ends when the request must stop: the client went away or
	// RequestTimeout passed (net/http). The front end watches its client itself.
	ctx context.Context

	// Per-exchange state of the upstream client, kept here so that the front
	// end's requests reuse it.
	resp  wire.Response
	ck    wire.Chunked
	wrote chan error // the streamed body's writer result
	done  bool       // the exchange's upstream connection was released
}

// scan fills what the pipeline needs besides the fields themselves, in one
// pass over them.
func (r *request) scan() {
	r.conn, r.te, r.xff = r.conn[:0], r.te[:0], r.xff[:0]
	r.hasXFP, r.hasXFH, r.hasXRealIP, r.expect = false, false, false, false
	r.idempotent = safeMethod(r.method)
	for _, f := range r.fields {
		switch fieldKindOf(f.Name) {
		case fieldConnection:
			r.conn = append(r.conn, f.Value)
		case fieldTE:
			r.te = append(r.te, f.Value)
		case fieldXFF:
			r.xff = append(r.xff, f.Value)
		case fieldXFP:
			r.hasXFP = true
		case fieldXFH:
			r.hasXFH = true
		case fieldXRealIP:
			r.hasXRealIP = true
		case fieldExpect:
			r.expect = true
		case fieldIdempotencyKey:
			r.idempotent = true
		}
	}
}

// hasBody reports whether the request has a body to send.
func (r *request) hasBody() bool { return r.held != nil || r.stream != nil }

// replayable reports whether the request can be sent again: its body is held
// whole, or none of it was read yet.
func (r *request) replayable() bool {
	return r.stream == nil || !r.stream.touched.Load()
}

// target is a request target split by slugpath: the slug, the raw path (which
// starts with "/<slug>" unless the slug came from the host name) and the raw query.
type target struct {
	slug, path, query string
	hasQuery          bool // a "?" was present, perhaps with an empty query
}

// parseTarget splits a raw request target (origin-form).
func parseTarget(raw string) (target, *slugpath.Error) {
	slug, path, query, hasQuery, err := slugpath.Parse(raw)
	return target{slug: slug, path: path, query: query, hasQuery: hasQuery}, err
}

// write writes the upstream target: the instance URL's path prefix, then the
// client's path and query byte for byte.
func (t *target) write(bw *bufio.Writer, prefix string) {
	bw.WriteString(prefix)
	bw.WriteString(t.path)
	if t.hasQuery {
		bw.WriteByte('?')
		bw.WriteString(t.query)
	}
}

// plain reports whether the target can be written into an HTTP/1.1 request
// line as it is. A target with spaces or control bytes can only come from an
// HTTP/2 client (HTTP/1.1's request line cannot hold them): the Transport
// decides what to do with it.
func (t *target) plain() bool { return plainTarget(t.path) && plainTarget(t.query) }

func plainTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
