package dashboard

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slugway/slugway/test/harness"
	"github.com/slugway/slugway/tracing/otlpreceiver"
)

// tpBackend answers everything with 200 and records each request's traceparent by path.
type tpBackend struct {
	mu   sync.Mutex
	seen map[string]string // path → traceparent
	url  string
}

func newTPBackend(t *testing.T) *tpBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tpBackend{seen: map[string]string{}, url: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen[r.URL.Path] = r.Header.Get("Traceparent")
		b.mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

// traceID returns the trace ID of the traceparent the backend saw for path.
func (b *tpBackend) traceID(path string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := strings.Split(b.seen[path], "-"); len(p) == 4 {
		return p[1]
	}
	return ""
}

// TestTracesFromTheBinaries runs the controller and the proxy with --otlp-endpoint
// pointing at an in-process OTLP receiver: a probe and a proxied request each
// arrive as a span whose trace ID is the one the instance saw in traceparent.
func TestTracesFromTheBinaries(t *testing.T) {
	rcv, err := otlpreceiver.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	flags := []string{"--otlp-endpoint", rcv.Endpoint(), "--trace-sampling", "1"}
	if err := c.Proxy.Stop(10 * time.Second); err != nil {
		t.Logf("stopping the proxy: %v", err)
	}
	if err := c.StartProxy(append([]string{"--access-log"}, flags...)...); err != nil {
		t.Fatal(err)
	}
	if err := c.Controller.Stop(10 * time.Second); err != nil {
		t.Logf("stopping the controller: %v", err)
	}
	if c.Controller, err = c.StartController(flags...); err != nil {
		t.Fatal(err)
	}

	b := newTPBackend(t)
	createSlug(t, "traced", "Traced", "team-t")
	createInstance(t, "traced", "traced-1", b.url)
	harness.Eventually(t, 60*time.Second, func() error {
		code, body, err := harness.Get(c.ProxyURL + "/traced/hello")
		if err == nil && code != 200 {
			err = &statusError{code, body}
		}
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The proxied request.
	tid := b.traceID("/traced/hello")
	if tid == "" {
		t.Fatal("the instance got no traceparent from the proxy")
	}
	s, ok := rcv.Wait(ctx, func(s otlpreceiver.Span) bool { return s.TraceID() == tid && s.Service == "slugway-proxy" })
	if !ok {
		t.Fatalf("no slugway-proxy span in trace %s; the receiver has %d spans", tid, len(rcv.Spans()))
	}
	if s.Attr("slugway.slug") != "traced" || s.Attr("slugway.instance") != "default/traced-1" || s.Attr("http.response.status_code") != "200" {
		t.Errorf("proxy span %q: %v", s.Name, s.Attributes)
	}

	// The controller's probes of the instance.
	ptid := b.traceID("/healthz")
	if ptid == "" {
		t.Fatal("the instance's health probe carried no traceparent")
	}
	if _, ok := rcv.Wait(ctx, func(s otlpreceiver.Span) bool {
		return s.Service == "slugway-controller" && s.TraceID() == ptid && s.Name == "probe http" && s.Attr("slugway.probe.target") == b.url+"/healthz"
	}); !ok {
		t.Fatalf("no probe span from the controller in trace %s, the instance's probe's traceparent; the receiver has %d spans", ptid, len(rcv.Spans()))
	}
	if _, ok := rcv.Wait(ctx, func(s otlpreceiver.Span) bool {
		return s.Service == "slugway-controller" && strings.HasPrefix(s.Name, "status write")
	}); !ok {
		t.Fatalf("no status write span from the controller; the receiver has %d spans", len(rcv.Spans()))
	}
	t.Logf("%d spans received", len(rcv.Spans()))
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return http.StatusText(e.code) + ": " + e.body }
