package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/slugway/slugway/tracing"
	"github.com/slugway/slugway/tracing/otlpreceiver"
)

// traceOrigin is an instance that records the traceparent of each request.
type traceOrigin struct {
	mu  sync.Mutex
	tps []string
	url string
}

func newTraceOrigin(t *testing.T) *traceOrigin {
	o := &traceOrigin{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.tps = append(o.tps, r.Header.Get("Traceparent")+"|"+r.Header.Get("Tracestate"))
		o.mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	o.url = s.URL
	return o
}

// last returns the trace ID, span ID and tracestate the instance saw last.
func (o *traceOrigin) last(t *testing.T) (traceID, spanID, state string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tps) == 0 {
		t.Fatal("the instance got no request")
	}
	tp, ts, _ := strings.Cut(o.tps[len(o.tps)-1], "|")
	p := strings.Split(tp, "-")
	if len(p) != 4 || len(p[1]) != 32 || len(p[2]) != 16 {
		t.Fatalf("the instance got traceparent %q", tp)
	}
	return p[1], p[2], ts
}

func tracedHandler(t *testing.T, o Options) (*Handler, *otlpreceiver.Receiver, *tracing.Tracing) {
	t.Helper()
	rcv, err := otlpreceiver.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rcv.Stop)
	tr, err := tracing.New(context.Background(), tracing.Options{Endpoint: rcv.Endpoint(), Sampling: 1, ServiceName: "slugway-proxy"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	o.Tracing = tr
	return NewHandler(o), rcv, tr
}

func span(t *testing.T, rcv *otlpreceiver.Receiver, tr *tracing.Tracing, traceID string) otlpreceiver.Span {
	t.Helper()
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, ok := rcv.Wait(ctx, func(s otlpreceiver.Span) bool { return s.TraceID() == traceID })
	if !ok {
		t.Fatalf("the OTLP receiver got no span of trace %s (it has %d spans)", traceID, len(rcv.Spans()))
	}
	return s
}

func tracedGet(t *testing.T, url string, hdr map[string]string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
}

// TestTracingThroughBothServers: the receiver gets one span per request whose
// trace ID is the one in the traceparent the instance saw, a new trace when the
// client sent none, the client's trace (as the span's parent) when it did, on
// the fast front end and on net/http alike.
func TestTracingThroughBothServers(t *testing.T) {
	var logged sync.Map // trace_id → access log line
	logger := funcr.NewJSON(func(obj string) {
		if i := strings.Index(obj, `"trace_id":"`); i >= 0 {
			logged.Store(obj[i+12:i+44], obj)
		}
	}, funcr.Options{})
	h, rcv, tr := tracedHandler(t, Options{AccessLog: true, Logger: logger})
	origin := newTraceOrigin(t)
	h.SetTable(table("s", origin.url))
	nethttp := httptest.NewServer(h)
	defer nethttp.Close()
	for name, base := range map[string]string{"front end": behindFront(t, h), "net/http": nethttp.URL} {
		t.Run(name, func(t *testing.T) {
			tracedGet(t, base+"/s/x", nil)
			tid, sid, _ := origin.last(t)
			s := span(t, rcv, tr, tid)
			if s.SpanID() != sid || s.ParentSpanID() != "" {
				t.Fatalf("span %s (parent %q); the instance saw span %s: the proxy's span must be the one it sends, a root", s.SpanID(), s.ParentSpanID(), sid)
			}
			if s.Name != "GET /s" || s.Attr("slugway.slug") != "s" || s.Attr("slugway.instance") != "ns/a" || s.Attr("http.response.status_code") != "200" ||
				s.Attr("slugway.attempts") != "1" || s.Attr("slugway.retries") != "0" || s.Service != "slugway-proxy" {
				t.Fatalf("span %q attributes %v (service %q)", s.Name, s.Attributes, s.Service)
			}
			if _, ok := logged.Load(tid); !ok {
				t.Errorf("no access log line carries trace_id %s", tid)
			}

			parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			tracedGet(t, base+"/s/y", map[string]string{"Traceparent": parent, "Tracestate": "vendor=abc"})
			tid, sid, state := origin.last(t)
			if tid != "4bf92f3577b34da6a3ce929d0e0e4736" || sid == "00f067aa0ba902b7" || state != "vendor=abc" {
				t.Fatalf("the instance saw trace %s span %s state %q: want the client's trace and state, with the proxy's span", tid, sid, state)
			}
			s = span(t, rcv, tr, tid)
			if s.SpanID() != sid || s.ParentSpanID() != "00f067aa0ba902b7" {
				t.Fatalf("span %s parent %s, want %s under the client's 00f067aa0ba902b7", s.SpanID(), s.ParentSpanID(), sid)
			}
			rcv.Reset()
		})
	}
}

// TestTracingRecordsRetriesAndEjection: a request whose first instance refuses the
// connection is retried on the other; the span says so.
func TestTracingRecordsRetriesAndEjection(t *testing.T) {
	h, rcv, tr := tracedHandler(t, Options{LBPolicy: PolicyRoundRobin})
	origin := newTraceOrigin(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	h.SetTable(table("s", origin.url, deadURL)) // ns/a live, ns/b dead; round robin starts at ns/b
	tracedGet(t, behindFront(t, h)+"/s/x", nil)
	tid, _, _ := origin.last(t)
	s := span(t, rcv, tr, tid)
	if s.Attr("slugway.attempts") != "2" || s.Attr("slugway.retries") != "1" || s.Attr("slugway.instance") != "ns/a" {
		t.Fatalf("attributes %v: want 2 attempts, ending at ns/a", s.Attributes)
	}
	if !strings.Contains(s.Attr("slugway.ejected"), "ns/b") {
		t.Fatalf("slugway.ejected = %q, want ns/b (the refused connection ejected it)", s.Attr("slugway.ejected"))
	}
	if len(s.Events) != 1 || s.Events[0].Name != "upstream attempt failed" {
		t.Fatalf("events %v: want the failed attempt", s.Events)
	}
}

// TestTracingOffPassesTraceparentThrough: without tracing the proxy is invisible
// to traces: the client's traceparent reaches the instance unchanged.
func TestTracingOffPassesTraceparentThrough(t *testing.T) {
	h := NewHandler(Options{})
	origin := newTraceOrigin(t)
	h.SetTable(table("s", origin.url))
	parent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tracedGet(t, behindFront(t, h)+"/s/x", map[string]string{"Traceparent": parent})
	if tid, sid, _ := origin.last(t); tid != "4bf92f3577b34da6a3ce929d0e0e4736" || sid != "00f067aa0ba902b7" {
		t.Fatalf("with tracing off the instance saw %s/%s, want the client's traceparent as sent", tid, sid)
	}
}

// BenchmarkFrontTraced is BenchmarkFront with tracing on, every request sampled
// and exported to an in-process OTLP receiver.
func BenchmarkFrontTraced(b *testing.B) { benchFrontTraced(b, 1) }

// BenchmarkFrontTracedLow samples 1% of new traces: the others still parse and
// write the trace headers and start a non-recording span, but export nothing.
func BenchmarkFrontTracedLow(b *testing.B) { benchFrontTraced(b, 0.01) }

func benchFrontTraced(b *testing.B, sampling float64) {
	rcv, err := otlpreceiver.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer rcv.Stop()
	tr, err := tracing.New(context.Background(), tracing.Options{Endpoint: rcv.Endpoint(), Sampling: sampling}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tr.Shutdown(context.Background()) }()
	h := NewHandler(Options{Tracing: tr})
	h.SetTable(table("s", minimalOrigin(b)))
	rt := roundTripper(b, behindFront(b, h))
	b.ReportAllocs()
	for b.Loop() {
		rt()
	}
}
