package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/proxy/slugpath"
)

func table(slug string, urls ...string) *routes.Table {
	r := &routes.Route{Slug: slug}
	for i, u := range urls {
		r.Endpoints = append(r.Endpoints, routes.Endpoint{Key: "ns/" + string(rune('a'+i)), Scheme: "http", Host: strings.TrimPrefix(u, "http://"), Health: slugwayv1.HealthHealthy})
	}
	return &routes.Table{Routes: map[string]*routes.Route{slug: r}}
}

func TestPickP2CAndEjection(t *testing.T) {
	h := NewHandler(Options{})
	h.SetTable(table("s", "http://a:1", "http://b:1", "http://c:1"))
	rt := h.table.Load().routes["s"]
	a, b, c := rt.backends[0], rt.backends[1], rt.backends[2]
	a.inflight.Store(10)
	b.inflight.Store(10)
	counts := map[*backend]int{}
	for range 3000 {
		counts[rt.pick(PolicyP2C, nil)]++
	}
	if counts[c] < 1900 { // c is in 2 of the 3 possible pairs and wins them
		t.Errorf("p2c sent %d of 3000 to the idle backend; want about 2000", counts[c])
	}
	c.eject(time.Minute, time.Minute)
	for range 100 {
		if rt.pick(PolicyP2C, nil) == c {
			t.Fatal("an ejected backend was picked while others are in rotation")
		}
	}
	if got := rt.pick(PolicyP2C, []*backend{a, b}); got != c {
		t.Fatalf("with every other backend tried, the ejected one is the last resort; got %v", got)
	}
	if rt.pick(PolicyP2C, []*backend{a, b, c}) != nil {
		t.Fatal("every backend tried: pick must return nil")
	}
	c.succeeded()
	if c.ejected(time.Now().UnixNano()) {
		t.Fatal("a success must put the backend back in rotation")
	}

	// Ejection backs off exponentially up to the max.
	c.eject(time.Second, 3*time.Second)
	c.eject(time.Second, 3*time.Second)
	c.eject(time.Second, 3*time.Second)
	if d := time.Until(time.Unix(0, c.ejectedUntil.Load())); d < 2900*time.Millisecond || d > 3*time.Second {
		t.Fatalf("third consecutive ejection lasts %v, want the 3s max", d)
	}

	// Backends keep their state across table rebuilds.
	h.SetTable(table("s", "http://a:1", "http://b:1", "http://c:1", "http://d:1"))
	if h.table.Load().routes["s"].backends[0] != a || a.inflight.Load() != 10 {
		t.Fatal("a rebuild lost the state of an endpoint that stayed")
	}
}

func TestPickRoundRobin(t *testing.T) {
	h := NewHandler(Options{LBPolicy: PolicyRoundRobin})
	h.SetTable(table("s", "http://a:1", "http://b:1", "http://c:1"))
	rt := h.table.Load().routes["s"]
	counts := map[*backend]int{}
	for range 300 {
		counts[rt.pick(PolicyRoundRobin, nil)]++
	}
	for _, b := range rt.backends {
		if counts[b] != 100 {
			t.Fatalf("round robin uneven: %v", counts)
		}
	}
}

func TestRetryBudget(t *testing.T) {
	b := newRetryBudget(0.5, 2)
	if first, second, third := b.withdraw(), b.withdraw(), b.withdraw(); !first || !second || third {
		t.Fatal("the burst allows exactly 2 retries")
	}
	b.deposit()
	if b.withdraw() {
		t.Fatal("half a retry earned is not a retry")
	}
	b.deposit()
	b.deposit()
	if !b.withdraw() {
		t.Fatal("two requests at ratio 0.5 earn a retry")
	}
}

// testOutHeader is the Transport path's upstream header for r, as a request
// that does not upgrade.
func (h *Handler) testOutHeader(r *http.Request) http.Header {
	req := h.newRequest(nil, r, new(handlerDeadline))
	req.upgrade = ""
	out, err := h.outHeader(req)
	if err != nil {
		panic(err)
	}
	return out
}

// testWriteOutHeader writes the upstream client's header fields for r.
func (h *Handler) testWriteOutHeader(bw *bufio.Writer, r *http.Request) error {
	req := h.newRequest(nil, r, new(handlerDeadline))
	req.upgrade = ""
	return h.rewriteRequestHeader(req, (*wireHeader)(bw))
}

func TestOutHeader(t *testing.T) {
	h := NewHandler(Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	r := httptest.NewRequest("GET", "/s/x", nil)
	r.Header = http.Header{
		"Connection": {"keep-alive, X-Drop"}, "X-Drop": {"1"}, "Te": {"trailers, deflate"}, "Upgrade": {"h2c"},
		"X-Forwarded-For": {"1.1.1.1", "2.2.2.2"}, "Cookie": {"a=1", "b=2"},
	}
	r.RemoteAddr = "10.1.2.3:5555"
	out := h.testOutHeader(r)
	if got := out["X-Forwarded-For"]; len(got) != 1 || got[0] != "1.1.1.1, 2.2.2.2, 10.1.2.3" {
		t.Errorf("trusted XFF %q", got)
	}
	if _, ok := out["X-Drop"]; ok {
		t.Error("a header named in Connection was forwarded")
	}
	if _, ok := out["Upgrade"]; ok {
		t.Error("Upgrade forwarded on a request that is not an upgrade")
	}
	if got := out["Te"]; len(got) != 1 || got[0] != "trailers" {
		t.Errorf("Te %q, want only trailers", got)
	}
	if len(out["Cookie"]) != 2 {
		t.Errorf("repeated header lost: %q", out["Cookie"])
	}
	r.RemoteAddr = "[2001:db8::1]:5555"
	if got := h.testOutHeader(r)["X-Forwarded-For"]; got[0] != "2001:db8::1" {
		t.Errorf("untrusted XFF %q", got)
	}
}

// backendServer is a loopback origin for the benchmarks.
func backendServer(b testing.TB) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		_, _ = io.WriteString(w, "hello")
	}))
	b.Cleanup(s.Close)
	return s
}

// BenchmarkRouteLookup is the per-request routing work: parse the target, look up the slug.
func BenchmarkRouteLookup(b *testing.B) {
	h := NewHandler(Options{})
	tbl := &routes.Table{Routes: map[string]*routes.Route{}}
	for i := range 1000 {
		s := "svc-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("0", i/26)
		tbl.Routes[s] = &routes.Route{Slug: s, Endpoints: []routes.Endpoint{{Key: "k", Scheme: "http", Host: "10.0.0.1:80"}}}
	}
	tbl.Routes["skeleton-svc"] = &routes.Route{Slug: "skeleton-svc", Endpoints: []routes.Endpoint{{Key: "a", Scheme: "http", Host: "10.0.0.1:80"}, {Key: "b", Scheme: "http", Host: "10.0.0.2:80"}}}
	h.SetTable(tbl)
	b.ReportAllocs()
	for b.Loop() {
		slug, _, _, _, err := slugpath.Parse("/skeleton-svc/hello/world?a=1&a=2")
		if err != nil {
			b.Fatal(err)
		}
		rt := h.table.Load().routes[slug]
		if rt.pick(PolicyP2C, nil) == nil {
			b.Fatal("no backend")
		}
	}
}

// headerBenchFixture is a typical browser request and a small response's header.
func headerBenchFixture() (*Handler, *http.Request, http.Header) {
	h := NewHandler(Options{})
	r := httptest.NewRequest("GET", "/skeleton-svc/hello", nil)
	r.Header = http.Header{
		"Accept": {"text/html"}, "Accept-Encoding": {"gzip, br"}, "Accept-Language": {"en"}, "Cookie": {"a=1"},
		"User-Agent": {"bench"}, "Connection": {"keep-alive"},
	}
	return h, r, http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"5"}, "Date": {"x"}, "Set-Cookie": {"a", "b"}}
}

// BenchmarkHeaderHandling is the header work of one proxied request: the upstream
// request's headers from a typical browser request, and the response's copy back.
func BenchmarkHeaderHandling(b *testing.B) {
	h, r, resp := headerBenchFixture()
	dst := make(http.Header, 8)
	b.ReportAllocs()
	for b.Loop() {
		out := h.testOutHeader(r)
		if len(out) == 0 {
			b.Fatal("empty")
		}
		clear(dst)
		copyResponseHeader(dst, resp)
	}
}

// BenchmarkHeaderHandlingFastPath is the same work in the upstream client: the
// upstream request's header fields written straight into the connection's
// buffer (no map), and the response's copy back.
func BenchmarkHeaderHandlingFastPath(b *testing.B) {
	h, r, resp := headerBenchFixture()
	dst := make(http.Header, 8)
	bw := bufio.NewWriterSize(io.Discard, 4096)
	req := h.newRequest(nil, r, new(handlerDeadline))
	b.ReportAllocs()
	for b.Loop() {
		if err := h.rewriteRequestHeader(req, (*wireHeader)(bw)); err != nil {
			b.Fatal(err)
		}
		bw.Reset(io.Discard)
		clear(dst)
		copyResponseHeader(dst, resp)
	}
}

// BenchmarkServeHTTP is one whole proxied request through the handler to a
// loopback origin over a kept-alive connection (the client side is in-process).
func BenchmarkServeHTTP(b *testing.B) {
	be := backendServer(b)
	h := NewHandler(Options{})
	h.SetTable(table("skeleton-svc", be.URL))
	req := httptest.NewRequest("GET", "/skeleton-svc/hello?a=1", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(c int)           { w.code = c }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
