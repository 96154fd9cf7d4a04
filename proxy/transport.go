package proxy

import (
	"net/http"
	"net/url"
	"time"
)

// net/http's Transport, only where the upstream client (upstream_client.go)
// cannot go: h2c instances (HTTP/2 with prior knowledge), https instances
// (TLS, HTTP/2 by ALPN), upgrades (WebSocket), request trailers, Expect:
// 100-continue, and targets an HTTP/1.1 request line cannot hold. Only
// net/http's side sends such requests: the front end hands them over.

// newTransports returns the HTTP/1.1 (and HTTP/2 over TLS) transport and the
// h2c one, both dialing through upstreamDialer and bounding response heads
// like the upstream client.
func newTransports(o *Options) (h1, h2c http.RoundTripper) {
	dial := upstreamDialer(o)
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p1.SetHTTP2(true) // for https instances, by ALPN
	p2.SetUnencryptedHTTP2(true)
	t1 := &http.Transport{
		DialContext:            dial,
		Protocols:              &p1,
		MaxIdleConns:           0, // no global limit
		MaxIdleConnsPerHost:    o.MaxIdleConnsPerHost,
		IdleConnTimeout:        o.UpstreamIdleTimeout,
		ResponseHeaderTimeout:  o.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: int64(o.MaxResponseHeaderBytes),
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
	t2 := &http.Transport{
		DialContext:            dial,
		Protocols:              &p2,
		IdleConnTimeout:        o.UpstreamIdleTimeout,
		ResponseHeaderTimeout:  o.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: int64(o.MaxResponseHeaderBytes),
		DisableCompression:     true,
	}
	return t1, t2
}

// transportRoundTrip sends req to b through the Transport and relays the
// response (or completes the upgrade).
func (h *Handler) transportRoundTrip(b *backend, req *request, rw responder) (code int, started bool, err error) {
	hr, ok := rw.(*httpResponder)
	if !ok {
		return 0, false, errNotPooled
	}
	if hr.out == nil {
		hdr, err := h.outHeader(req)
		if err != nil {
			return 0, false, err
		}
		r := hr.r
		hr.out = (&http.Request{
			Method:        req.method,
			URL:           new(url.URL),
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        hdr,
			ContentLength: req.contentLength,
			Trailer:       r.Trailer,
		}).WithContext(req.ctx)
		if req.stream != nil {
			hr.out.Body = req.stream
		}
	}
	t := &req.target
	*hr.out.URL = url.URL{Scheme: b.ep.Scheme, Host: b.ep.Host, Opaque: b.ep.Prefix + t.path, RawQuery: t.query, ForceQuery: t.hasQuery && t.query == ""}
	tr := b.transport
	if req.upgrade != "" {
		tr = h.h1 // upgrades are an HTTP/1.1 mechanism
	}
	resp, err := tr.RoundTrip(hr.out)
	if err != nil {
		return 0, false, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return h.switchProtocols(hr, resp, req.upgrade), true, nil
	}
	return resp.StatusCode, true, hr.relayTransport(resp, req.start)
}

// relayTransport relays a Transport response: the head by the response-header
// policy, the body as relayBody streams it, then the trailers. A gRPC response
// whose body broke ends with a gRPC status instead (grpc_status.go).
func (hr *httpResponder) relayTransport(resp *http.Response, start time.Time) error {
	defer resp.Body.Close()
	dst := hr.w.Header()
	copyResponseHeader(dst, resp.Header)
	hr.stream = resp.ContentLength < 0 || isEventStream(dst)
	hr.status = resp.StatusCode
	hr.commit()
	_, err := relayBody(hr, resp.Body)
	if hr.r.ProtoMajor == 2 && hr.r.Body != nil {
		// The instance's response ended while the client may still be sending (a
		// gRPC status in the middle of a bidi stream): stop relaying the client's
		// body, or resp.Body.Close waits for a body write that never ends. An
		// HTTP/2 request body closes without blocking; HTTP/1.1's would read on.
		hr.r.Body.Close()
	}
	if err != nil {
		tr, ok := grpcBrokenStatus(hr.r, dst, start, err)
		if !ok {
			return err
		}
		hr.trailers(tr)
		return &grpcEndedError{err}
	}
	hr.trailers(resp.Trailer)
	return nil
}
