package health

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Probe runs one probe. It never panics and always returns within t.Timeout (plus
// scheduling noise). With a global tracer provider set (tracing.SetGlobal, when the
// controller has --otlp-endpoint), each probe is a client span, and an HTTP probe
// carries its traceparent; otherwise the span is a no-op.
func (p *Prober) Probe(ctx context.Context, t Target) Result {
	target := t.URL
	if t.Kind == KindTCP {
		target = t.Address
	}
	ctx, span := otel.Tracer("github.com/slugway/slugway/health").Start(ctx, "probe "+string(t.Kind),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("slugway.probe.kind", string(t.Kind)), attribute.String("slugway.probe.target", target)))
	r := p.probe(ctx, t)
	if span.IsRecording() {
		span.SetAttributes(attribute.Bool("slugway.probe.ok", r.OK), attribute.String("slugway.probe.message", r.Message),
			attribute.Int64("slugway.probe.latency_us", r.Latency.Microseconds()))
		if !r.OK {
			span.SetStatus(codes.Error, r.Message)
		}
	}
	span.End()
	return r
}
