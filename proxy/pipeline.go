package proxy

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/slugway/slugway/proxy/wire"
)

// The pipeline: what happens to a request once a server has parsed it. Both
// servers (the front end in front.go, net/http through Handler.ServeHTTP) fill
// a request and a responder and call pipeline; nothing below knows which
// server parsed the request.
//
//	lookup    route.go         the slug's live route, or the proxy's own answer
//	limits    pipeline.go      request body size
//	forward   pipeline.go      the balancer's picks (balancer.go), one attempt
//	                           each, retried by retry.go's rules
//	client    upstream_client.go   one exchange on a pooled connection
//	          (upstream_pool.go), or the Transport (transport.go) where it must be
//	relay     relay.go         the response back to the client
//	errors    errors.go        every answer the proxy gives itself
//	observe   observe.go       metrics and the access log

// responder is the client's side of the pipeline: the front end's raw
// connection, or a net/http ResponseWriter.
type responder interface {
	// raw reports whether response bodies go out in the instance's framing
	// (chunked stays chunked: the front end); else they are decoded (net/http).
	raw() bool
	// writeHead begins the response with the instance's head (req.resp, whose
	// bytes are head), less what dropResponseField drops. Until started, an
	// answer may still replace it.
	writeHead(req *request, head []byte, mode bodyMode)
	// started reports whether any of the response reached the client's
	// connection (or net/http's): then nothing can replace it.
	started() bool
	// write sends body bytes (it may hold small ones back until flush).
	write(p []byte) error
	// flush sends what write held back.
	flush() error
	// answer sends one of the proxy's own responses (see writeError).
	answer(code int, fields []wire.Field, body []byte) int
	// watch starts noticing the client going away while the exchange on pc
	// runs (then pc is cancelled); unwatch stops that and reports whether it went.
	watch(req *request, pc *upConn)
	unwatch() bool
	// gone reports whether the client went away.
	gone() bool
}

// pipeline answers one parsed request: the route lookup's result res (see
// lookup), limits, forwarding, and the request's metrics and access log line.
// abort: the response broke partway, the client's connection must close.
func (h *Handler) pipeline(req *request, res routed, rw responder) (abort bool) {
	var code int
	sm := res.sm
	h.startTrace(req, res)
	switch {
	case res.rt == nil:
		var extra []wire.Field
		if res.extra.Name != "" {
			extra = []wire.Field{res.extra}
		}
		code = writeError(rw, res.code, res.msg, res.slug, extra...)
	default:
		code, abort = h.serve(req, res.rt, rw)
	}
	h.observe(req, sm, code, abort)
	return abort
}

// serve applies the limits and forwards the request.
func (h *Handler) serve(req *request, rt *liveRoute, rw responder) (code int, abort bool) {
	if max := h.opts.MaxRequestBodyBytes; max > 0 && req.contentLength > max {
		return writeError(rw, http.StatusRequestEntityTooLarge, "request body too large: the limit is "+strconv.FormatInt(max, 10)+" bytes", rt.slug), false
	}
	h.budget.deposit()
	return h.forward(req, rt, rw)
}

// forward sends the request to one of the route's backends, retrying where
// that is safe (retry.go), and relays the response. It returns the status
// answered; abort: the response broke after it began.
func (h *Handler) forward(req *request, rt *liveRoute, rw responder) (code int, abort bool) {
	var kind errKind
	done := false
	full, tried := 0, 0
	rt.tryEach(h.opts.LBPolicy, func(b *backend, attempt int) (again bool) {
		if max := h.opts.MaxConnsPerInstance; max > 0 && b.inflight.Load() > int64(max) {
			full++ // --max-conns-per-instance: this one has no room (tryEach counted us in)
			return true
		}
		tried++
		req.trace.attempt(b)
		var started bool // the response began: it cannot be replaced by another
		var err error
		if b.pool != nil && pooled(req) {
			code, started, err = h.roundTrip(b.pool, req, b.ep.Prefix, rw, rt.m)
		} else {
			code, started, err = h.transportRoundTrip(b, req, rw)
		}
		if err == nil {
			b.succeeded()
			done = true
			return false
		}
		kind = classify(rw, err)
		done = true
		switch {
		case kind == errClient:
			code, abort = codeClientGone, true
		case started:
			h.log.V(1).Info("response body broke", "slug", rt.slug, "error", err.Error())
			req.trace.broke()
			var ended *grpcEndedError
			abort = !errors.As(err, &ended) // a gRPC status ended it: the client's stream stays whole
		case kind == errBodyTooLarge:
			code = writeError(rw, http.StatusRequestEntityTooLarge, "request body too large", rt.slug)
		case kind == errBody:
			code = writeError(rw, http.StatusBadRequest, "reading the request body failed", rt.slug)
		default:
			done = false
			req.trace.failure(b, kind, ejects(kind))
			return h.failed(rt, b, kind, attempt, err, req.replayable() && req.ctx.Err() == nil, req.idempotent)
		}
		return false
	})
	if done {
		return code, abort
	}
	if tried == 0 && full > 0 {
		rt.m.upstreamError("instance-full")
		return writeError(rw, http.StatusServiceUnavailable, "every instance is at --max-conns-per-instance", rt.slug,
			wire.Field{Name: "Retry-After", Value: "1"}), false
	}
	if kind == errTimeout {
		return writeError(rw, http.StatusGatewayTimeout, "upstream timed out", rt.slug), false
	}
	return writeError(rw, http.StatusBadGateway, "upstream failed", rt.slug), false
}

// pooled reports whether a request to an http:// instance can take the
// upstream client rather than the Transport: not an upgrade, no request
// trailers, no Expect (the Transport's 100-continue handling), and a target an
// HTTP/1.1 request line can hold.
func pooled(req *request) bool {
	return req.upgrade == "" && !req.trailers && !req.expect && req.target.plain()
}

// codeClientGone is recorded when the client went away before the response (nginx's 499).
const codeClientGone = 499
