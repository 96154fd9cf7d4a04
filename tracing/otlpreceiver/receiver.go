// Package otlpreceiver is an in-process OTLP gRPC trace receiver for tests: the
// collector's TraceService from the official protobuf packages
// (go.opentelemetry.io/proto/otlp), keeping every span it is sent.
package otlpreceiver

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Receiver listens on 127.0.0.1 and stores the spans exported to it.
type Receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	srv *grpc.Server
	ln  net.Listener

	mu    sync.Mutex
	spans []Span
	kick  chan struct{}
}

// Span is a received span with its resource's service.name.
type Span struct {
	*tracepb.Span
	Service string
}

// TraceID and SpanID are the span's IDs in hex, as traceparent writes them.
func (s Span) TraceID() string { return hex.EncodeToString(s.Span.TraceId) }
func (s Span) SpanID() string  { return hex.EncodeToString(s.Span.SpanId) }

// ParentSpanID is the parent's span ID in hex ("" for a root span).
func (s Span) ParentSpanID() string { return hex.EncodeToString(s.Span.ParentSpanId) }

// Attr returns the string form of attribute key ("" when absent).
func (s Span) Attr(key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return anyString(kv.Value)
		}
	}
	return ""
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	}
	return v.String()
}

// Start runs a receiver until Stop.
func Start() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{srv: grpc.NewServer(), ln: ln, kick: make(chan struct{}, 1)}
	coltracepb.RegisterTraceServiceServer(r.srv, r)
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Endpoint is the receiver's address as --otlp-endpoint takes it.
func (r *Receiver) Endpoint() string { return "http://" + r.ln.Addr().String() }

// Stop stops the server.
func (r *Receiver) Stop() { r.srv.Stop() }

// Export is the OTLP TraceService call.
func (r *Receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	for _, rs := range req.ResourceSpans {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				svc = anyString(kv.Value)
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.spans = append(r.spans, Span{Span: s, Service: svc})
			}
		}
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Wait waits until a received span satisfies match, or ctx ends.
func (r *Receiver) Wait(ctx context.Context, match func(Span) bool) (Span, bool) {
	for {
		for _, s := range r.Spans() {
			if match(s) {
				return s, true
			}
		}
		select {
		case <-ctx.Done():
			return Span{}, false
		case <-r.kick:
		}
	}
}

// Reset forgets the spans received so far.
func (r *Receiver) Reset() {
	r.mu.Lock()
	r.spans = nil
	r.mu.Unlock()
}
