package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slugway/slugway/health"
	"github.com/slugway/slugway/tracing"
	"github.com/slugway/slugway/tracing/otlpreceiver"
)

func receiver(t *testing.T) *otlpreceiver.Receiver {
	t.Helper()
	r, err := otlpreceiver.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func start(t *testing.T, o tracing.Options) *tracing.Tracing {
	t.Helper()
	tr, err := tracing.New(context.Background(), o, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr
}

// seen records the traceparent of every request a server receives.
type seen struct {
	mu  sync.Mutex
	tps []string
}

func (s *seen) handler(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.tps = append(s.tps, r.Header.Get("Traceparent"))
	s.mu.Unlock()
	_, _ = w.Write([]byte("ok"))
}

func (s *seen) last(t *testing.T) (traceID, spanID string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tps) == 0 {
		t.Fatal("the server got no request")
	}
	p := strings.Split(s.tps[len(s.tps)-1], "-")
	if len(p) != 4 || p[0] != "00" || len(p[1]) != 32 || len(p[2]) != 16 {
		t.Fatalf("traceparent %q is not W3C's 00-<trace id>-<span id>-<flags>", s.tps[len(s.tps)-1])
	}
	return p[1], p[2]
}

func waitSpan(t *testing.T, r *otlpreceiver.Receiver, tr *tracing.Tracing, what string, match func(otlpreceiver.Span) bool) otlpreceiver.Span {
	t.Helper()
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatalf("flushing to the receiver: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, ok := r.Wait(ctx, match)
	if !ok {
		t.Fatalf("the OTLP receiver got no %s span; it has %d spans", what, len(r.Spans()))
	}
	return s
}

// TestProbeSpansReachTheReceiver: with tracing on, a health probe is a span
// exported over OTLP, and the instance sees its trace in the traceparent header.
func TestProbeSpansReachTheReceiver(t *testing.T) {
	rcv := receiver(t)
	tr := start(t, tracing.Options{Endpoint: rcv.Endpoint(), Sampling: 1, ServiceName: "slugway-controller"})
	tr.SetGlobal()
	var inst seen
	srv := httptest.NewServer(http.HandlerFunc(inst.handler))
	defer srv.Close()

	res := health.NewProber(nil).Probe(context.Background(), health.Target{Kind: health.KindHTTP, URL: srv.URL + "/healthz", Timeout: time.Second})
	if !res.OK {
		t.Fatalf("probe: %+v", res)
	}
	traceID, spanID := inst.last(t)
	s := waitSpan(t, rcv, tr, "probe", func(s otlpreceiver.Span) bool { return s.Name == "probe http" })
	if s.TraceID() != traceID || s.SpanID() != spanID {
		t.Fatalf("probe span %s/%s, but the instance saw traceparent %s/%s", s.TraceID(), s.SpanID(), traceID, spanID)
	}
	if s.Service != "slugway-controller" || s.Attr("slugway.probe.ok") != "true" || s.Attr("slugway.probe.target") != srv.URL+"/healthz" {
		t.Fatalf("probe span attributes: service %q %v", s.Service, s.Attributes)
	}
}

// TestStatusWritesAreSpans: the apiserver transport wrapper traces writes of a
// status subresource, propagating their context, and nothing else.
func TestStatusWritesAreSpans(t *testing.T) {
	rcv := receiver(t)
	tr := start(t, tracing.Options{Endpoint: rcv.Endpoint(), Sampling: 1, ServiceName: "slugway-controller"})
	var api seen
	srv := httptest.NewServer(http.HandlerFunc(api.handler))
	defer srv.Close()
	c := &http.Client{Transport: tr.StatusWrites(http.DefaultTransport)}
	do := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	do("GET", "/apis/slugway.io/v1alpha1/instances")
	if tp := api.tps[0]; tp != "" {
		t.Fatalf("a list is not a status write, yet it carried traceparent %q", tp)
	}
	do("PATCH", "/apis/slugway.io/v1alpha1/namespaces/default/instances/i1/status")
	traceID, _ := api.last(t)
	s := waitSpan(t, rcv, tr, "status write", func(s otlpreceiver.Span) bool { return s.Name == "status write PATCH" })
	if s.TraceID() != traceID {
		t.Fatalf("status write span in trace %s, the apiserver saw %s", s.TraceID(), traceID)
	}
	if n := len(rcv.Spans()); n != 1 {
		t.Fatalf("%d spans, want only the status write's", n)
	}
}

func TestOffUnlessAnEndpointIsGiven(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := tracing.New(context.Background(), tracing.Options{Sampling: -1}, "test")
	if err != nil || tr != nil {
		t.Fatalf("no endpoint: tracing must be off, got %v, %v", tr, err)
	}
	if rt := tr.StatusWrites(http.DefaultTransport); rt != http.DefaultTransport {
		t.Fatal("off, the transport is not wrapped")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	if !(tracing.Options{}).Enabled() {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on")
	}
	for _, bad := range []string{"127.0.0.1:4317", "grpc://x:1", "http://"} {
		if _, err := tracing.New(context.Background(), tracing.Options{Endpoint: bad}, "test"); err == nil || !strings.Contains(err.Error(), "as a URL") {
			t.Errorf("endpoint %q: %v, want an error saying to give a URL", bad, err)
		}
	}
	if _, err := tracing.New(context.Background(), tracing.Options{Endpoint: "http://127.0.0.1:1", Sampling: 2}, "test"); err == nil {
		t.Error("sampling 2 must be refused")
	}
}
