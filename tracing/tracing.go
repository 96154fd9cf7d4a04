// Package tracing sets up OpenTelemetry tracing for slugway's processes: an OTLP
// gRPC exporter, a sampler, and the W3C Trace Context propagator (traceparent and
// tracestate). It is off unless an endpoint is given, by flag or by the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) variable.
package tracing

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure tracing.
type Options struct {
	// Endpoint is the OTLP gRPC receiver as a URL: http://collector:4317 (plaintext)
	// or https://collector:4317. Empty: OTEL_EXPORTER_OTLP_ENDPOINT, and with neither, tracing is off.
	Endpoint string
	// Sampling is the fraction of new traces recorded, 0 to 1; requests that arrive
	// with a traceparent follow its sampled flag. Negative: the SDK's default, which
	// honours OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (else every trace).
	Sampling float64
	// ServiceName is service.name on every span; OTEL_SERVICE_NAME overrides it.
	ServiceName string
}

// Tracing is a running tracer provider. A nil *Tracing is tracing off.
type Tracing struct {
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	provider   *sdktrace.TracerProvider
}

// Enabled reports whether o, with the environment, turns tracing on.
func (o Options) Enabled() bool {
	return o.Endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// New starts tracing as o says, or returns nil when it is off. Spans are batched
// and exported in the background; Shutdown flushes them.
func New(ctx context.Context, o Options, scope string) (*Tracing, error) {
	if !o.Enabled() {
		return nil, nil
	}
	var opts []otlptracegrpc.Option
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--otlp-endpoint %q: give the OTLP gRPC receiver as a URL, http://host:4317 (plaintext) or https://host:4317", o.Endpoint)
		}
		opts = append(opts, otlptracegrpc.WithEndpointURL(o.Endpoint))
	}
	if o.Sampling > 1 {
		return nil, errors.New("--trace-sampling must be between 0 and 1 (the fraction of new traces recorded)")
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter: %w", err)
	}
	res, err := resource.Merge(resource.NewSchemaless(attribute.String("service.name", o.ServiceName)), resource.Environment())
	if err != nil {
		return nil, err
	}
	popts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)), sdktrace.WithResource(res)}
	if o.Sampling >= 0 {
		popts = append(popts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.Sampling))))
	}
	tp := sdktrace.NewTracerProvider(popts...)
	return &Tracing{Tracer: tp.Tracer(scope), Propagator: propagation.TraceContext{}, provider: tp}, nil
}

// Shutdown exports the spans still buffered and stops the provider.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// ForceFlush exports the spans buffered so far (tests).
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// BindFlags registers --otlp-endpoint and --trace-sampling on fs.
func BindFlags(fs *flag.FlagSet, o *Options) {
	fs.StringVar(&o.Endpoint, "otlp-endpoint", "", "send traces to this OTLP gRPC receiver, as a URL (http://collector:4317 for plaintext); default OTEL_EXPORTER_OTLP_ENDPOINT; with neither, tracing is off")
	fs.Float64Var(&o.Sampling, "trace-sampling", -1, "fraction of new traces recorded, 0 to 1 (requests arriving with a traceparent follow its sampled flag); -1: OTEL_TRACES_SAMPLER/OTEL_TRACES_SAMPLER_ARG, else all")
}

// SetGlobal makes t the process's global tracer provider and propagator, which
// libraries (and package health's probes) use. Without it they are no-ops.
func (t *Tracing) SetGlobal() {
	if t == nil {
		return
	}
	otel.SetTracerProvider(t.provider)
	otel.SetTextMapPropagator(t.Propagator)
}

// StatusWrites wraps an apiserver client's transport (rest.Config.Wrap) so that
// every write of a status subresource is a client span, with the trace context
// sent along. Other requests (watches, lists, leases) are not traced.
func (t *Tracing) StatusWrites(rt http.RoundTripper) http.RoundTripper {
	if t == nil {
		return rt
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.Propagator),
		otelhttp.WithFilter(isStatusWrite),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return "status write " + r.Method
		}),
	)
}

func isStatusWrite(r *http.Request) bool {
	return (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.HasSuffix(r.URL.Path, "/status")
}
