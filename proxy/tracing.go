package proxy

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/slugway/slugway/proxy/wire"
)

// Tracing (Options.Tracing, package tracing): one server span per request, from
// the pipeline's start to observe, in the trace of the client's traceparent (or a
// new one). The instance gets the span's traceparent and tracestate in place of
// the client's. With tracing off, req.trace stays nil and every hook below is a
// nil check.

// reqTrace is one request's span and what it learned on the way.
type reqTrace struct {
	span     trace.Span
	instance string // the last backend tried (namespace/name)
	attempts int
	ejected  []string // backends this request's failures ejected
	broken   bool     // the response broke after it began

	// The propagator's carriers, held here so that they cost no allocation of their
	// own: in reads the client's fields, out is the span's context as the instance
	// gets it.
	in  fieldCarrier
	out injected
}

// startTrace begins req's span when tracing is on (res is the route lookup's answer).
func (h *Handler) startTrace(req *request, res routed) {
	t := h.opts.Tracing
	if t == nil {
		return
	}
	rt := &reqTrace{in: req.fields}
	ctx := t.Propagator.Extract(context.Background(), &rt.in)
	slug := unknownSlug
	if res.rt != nil {
		slug = res.rt.slug
	}
	_, span := t.Tracer.Start(ctx, req.method, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(req.start))
	rt.span = span
	// The name and attributes only for a span that records: an unsampled request
	// (most of them at a low --trace-sampling) pays for its span context, not for
	// these. (The sampler does not read them: ParentBased and TraceIDRatioBased
	// decide by IDs.)
	if span.IsRecording() {
		if res.rt != nil {
			span.SetName(req.method + " /" + slug)
		}
		span.SetAttributes(
			attribute.String("slugway.slug", slug),
			attribute.String("http.request.method", req.method),
			attribute.String("url.path", strings.Clone(req.target.path)),
			attribute.String("network.protocol.version", strings.TrimPrefix(req.proto, "HTTP/")),
			attribute.String("client.address", req.remoteIP),
		)
	}
	t.Propagator.Inject(trace.ContextWithSpan(context.Background(), span), &rt.out)
	rt.in = nil // the fields belong to the connection's buffer
	req.trace = rt
}

// attempt notes that b gets the request (attempt 0, then retries).
func (t *reqTrace) attempt(b *backend) {
	if t == nil {
		return
	}
	t.attempts++
	t.instance = *b.key.Load()
}

// failure notes a failed attempt at b, and whether it ejected b.
func (t *reqTrace) failure(b *backend, kind errKind, ejected bool) {
	if t == nil || !t.span.IsRecording() {
		return
	}
	t.span.AddEvent("upstream attempt failed", trace.WithAttributes(
		attribute.String("slugway.instance", *b.key.Load()), attribute.String("error.type", kind.String()), attribute.Bool("slugway.ejected", ejected)))
	if ejected {
		t.ejected = append(t.ejected, *b.key.Load())
	}
}

// broke notes that the response broke after it began (whether the client's
// connection is then aborted or, for gRPC, the call ends with a status).
func (t *reqTrace) broke() {
	if t != nil {
		t.broken = true
	}
}

// endTrace ends req's span with the answer.
func (h *Handler) endTrace(req *request, code int, abort bool) {
	t := req.trace
	if t == nil {
		return
	}
	req.trace = nil // the front end reuses req for the connection's next request
	if !t.span.IsRecording() {
		return // an unsampled span: End would do nothing with it
	}
	attrs := []attribute.KeyValue{
		attribute.Int("http.response.status_code", code),
		attribute.Int("slugway.attempts", t.attempts),
		attribute.Int("slugway.retries", max(t.attempts-1, 0)),
		attribute.StringSlice("slugway.ejected", t.ejected),
		attribute.Bool("slugway.aborted", abort),
	}
	if t.instance != "" {
		attrs = append(attrs, attribute.String("slugway.instance", t.instance))
	}
	t.span.SetAttributes(attrs...)
	if code >= 500 || abort || t.broken {
		t.span.SetStatus(codes.Error, "")
	}
	t.span.End(trace.WithTimestamp(req.end))
}

// traceID is req's trace ID for the access log ("" with tracing off).
func (t *reqTrace) traceID() string {
	if t == nil {
		return ""
	}
	return t.span.SpanContext().TraceID().String()
}

// isTraceField reports the W3C Trace Context fields, which the proxy replaces
// with its own span's when tracing is on.
func isTraceField(name string) bool {
	return wire.EqualFold(name, "traceparent") || wire.EqualFold(name, "tracestate")
}

// traceFields sends the span's context to the instance.
func (t *reqTrace) traceFields(out headerSink) {
	out.field("Traceparent", t.out.traceparent)
	if t.out.tracestate != "" {
		out.field("Tracestate", t.out.tracestate)
	}
}

// fieldCarrier reads a request's header fields for the propagator.
type fieldCarrier []wire.Field

func (c *fieldCarrier) Get(key string) string {
	for _, f := range *c {
		if wire.EqualFold(f.Name, key) {
			return strings.Clone(f.Value) // the span keeps it; the front end's strings point into its read buffer
		}
	}
	return ""
}

func (c *fieldCarrier) Set(string, string) {}

func (c *fieldCarrier) Keys() []string {
	keys := make([]string, len(*c))
	for i, f := range *c {
		keys[i] = f.Name
	}
	return keys
}

// injected collects what the propagator writes.
type injected struct{ traceparent, tracestate string }

func (c *injected) Get(key string) string {
	switch key {
	case "traceparent":
		return c.traceparent
	case "tracestate":
		return c.tracestate
	}
	return ""
}

func (c *injected) Set(key, value string) {
	switch key {
	case "traceparent":
		c.traceparent = value
	case "tracestate":
		c.tracestate = value
	}
}

func (c *injected) Keys() []string { return []string{"traceparent", "tracestate"} }
