package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

// behindFront puts h behind the fast front end and its net/http fallback, as
// Proxy.Run does, and returns the base URL.
func behindFront(t testing.TB, h *Handler) string {
	_, addr := startFront(t, h)
	return "http://" + addr
}

// startFront is behindFront that returns the front end and its listening address,
// for tests that drive the front end's state (draining) or speak raw bytes to it.
func startFront(t testing.TB, h *Handler) (*front, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slow := newChanListener(ln.Addr())
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(slow) }()
	fe := newFront(h, slow)
	go func() { _ = fe.serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		done := make(chan struct{})
		close(done)
		_ = fe.shutdown(done)
		srv.Close()
	})
	return fe, ln.Addr().String()
}

// handoffs sums the connections the front end handed to net/http, by reason.
func handoffs(t *testing.T, h *Handler) map[string]float64 {
	t.Helper()
	mfs, err := h.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "slugway_proxy_net_http_handoffs_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return got
}

// rawConn is a client connection that writes bytes and reads responses.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, url string) *rawConn {
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one response (to a request with method) and its body.
func (r *rawConn) read(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	for err == nil && resp.StatusCode < 200 { // 100 Continue and such
		resp, err = http.ReadResponse(r.br, &http.Request{Method: method})
	}
	if err != nil {
		r.t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp, string(b)
}

func TestFrontServesPlainRequestsItself(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	var bodies []string
	be, conns := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r)
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Keep-Alive", "timeout=5") // hop-by-hop: not relayed
		w.Header().Set("X-Echo", r.Method+" "+r.RequestURI)
		_, _ = io.WriteString(w, "hello "+r.Method)
	})
	h := NewHandler(Options{})
	h.SetTable(table("s", be.URL))
	c := dialRaw(t, behindFront(t, h))

	c.send("GET /s/a%2Fb/c?x=1&y=%20 HTTP/1.1\r\nHost: front.example\r\nuser-agent: ua\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
	resp, body := c.read("GET")
	if resp.StatusCode != 200 || body != "hello GET" || resp.Header.Get("X-Echo") != "GET /s/a%2Fb/c?x=1&y=%20" {
		t.Fatalf("GET: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if len(resp.Header["Set-Cookie"]) != 2 || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("Date") == "" || resp.Close {
		t.Fatalf("response head not relayed as expected: %v (close %v)", resp.Header, resp.Close)
	}
	c.send("POST /s/p HTTP/1.1\r\nHost: front.example\r\nContent-Length: 5\r\n\r\nhello")
	if resp, body = c.read("POST"); resp.StatusCode != 200 || body != "hello POST" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	c.send("HEAD /s/h HTTP/1.1\r\nHost: front.example\r\n\r\n")
	if resp, body = c.read("HEAD"); resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len("hello HEAD")) {
		t.Fatalf("HEAD: %d %q length %d", resp.StatusCode, body, resp.ContentLength)
	}
	// A body that arrives after its head.
	c.send("PUT /s/late HTTP/1.1\r\nHost: front.example\r\nContent-Length: 4\r\n\r\n")
	time.Sleep(30 * time.Millisecond)
	c.send("late")
	if resp, body = c.read("PUT"); resp.StatusCode != 200 || body != "hello PUT" {
		t.Fatalf("PUT: %d %q", resp.StatusCode, body)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 4 || bodies[1] != "hello" || bodies[3] != "late" {
		t.Fatalf("the instance saw %d requests, bodies %q", len(seen), bodies)
	}
	r := seen[0]
	if r.Header.Get("X-Drop") != "" || r.Header.Get("Connection") != "" || r.Header.Get("User-Agent") != "ua" ||
		r.Header.Get("X-Forwarded-For") != "127.0.0.1" || r.Header.Get("X-Forwarded-Host") != "front.example" ||
		r.Header.Get("X-Forwarded-Proto") != "http" || r.Host != strings.TrimPrefix(be.URL, "http://") {
		t.Fatalf("upstream request head: host %q %v", r.Host, r.Header)
	}
	if got := handoffs(t, h); len(got) != 0 {
		t.Fatalf("plain requests were handed to net/http: %v", got)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("the instance got %d connections for 4 sequential requests; want 1 (pooled)", n)
	}
}

func TestFrontPipelining(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	t.Cleanup(be.Close)
	h := NewHandler(Options{})
	h.SetTable(table("s", be.URL))
	c := dialRaw(t, behindFront(t, h))
	var all strings.Builder
	for i := range 5 {
		fmt.Fprintf(&all, "GET /s/%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	// The fourth request is for an unknown slug: the pipeline answers it in order, and the connection goes on.
	c.send(strings.Replace(all.String(), "/s/3", "/nope/3", 1))
	for i := range 5 {
		resp, body := c.read("GET")
		want, code := fmt.Sprintf("/s/%d", i), 200
		if i == 3 {
			want, code = `{"error":"unknown slug","slug":"nope"}`+"\n", 404
		}
		if resp.StatusCode != code || body != want {
			t.Fatalf("response %d: %d %q, want %d %q", i, resp.StatusCode, body, code, want)
		}
	}
	if got := handoffs(t, h); len(got) != 0 {
		t.Fatalf("handoffs %v, want none", got)
	}
}

// TestFrontHandsOffWhatItDoesNotServe: what the front end cannot parse or hold
// goes to net/http; the pipeline's own answers (bad path, unknown slug) it
// gives itself.
func TestFrontHandsOffWhatItDoesNotServe(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.Proto, len(b))
	}))
	t.Cleanup(be.Close)
	big := strings.Repeat("x", maxFastBody+1)
	for _, tc := range []struct {
		name, req, reason, body string
		code                    int
	}{
		{"HTTP/1.0", "GET /s/a HTTP/1.0\r\nHost: x\r\n\r\n", "protocol version", "GET HTTP/1.1 0", 200},
		{"Expect", "POST /s/a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", "Expect", "POST HTTP/1.1 2", 200},
		{"chunked body", "POST /s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "Transfer-Encoding", "POST HTTP/1.1 2", 200},
		{"large body", "POST /s/a HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big, "large body", "POST HTTP/1.1 " + fmt.Sprint(len(big)), 200},
		{"no Host", "GET /s/a HTTP/1.1\r\n\r\n", "Host", "", 400},
		{"dot segment", "GET /s/../etc HTTP/1.1\r\nHost: x\r\n\r\n", "", "", 400}, // the pipeline answers: no hand-off
		{"unknown slug", "GET /zz/a HTTP/1.1\r\nHost: x\r\n\r\n", "", "", 404},
		{"bad field", "GET /s/a HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", "", "", 400}, // refused by the front end itself (wire.RequestError)
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(Options{})
			h.SetTable(table("s", be.URL))
			c := dialRaw(t, behindFront(t, h))
			c.send(tc.req)
			resp, body := c.read(strings.Fields(tc.req)[0])
			if resp.StatusCode != tc.code || (tc.body != "" && body != tc.body) {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, tc.code, tc.body)
			}
			if got := handoffs(t, h); tc.reason == "" && len(got) != 0 {
				t.Fatalf("handoffs %v, want none: the front end answers this itself", got)
			} else if tc.reason != "" && got[tc.reason] != 1 {
				t.Fatalf("handoffs %v, want one for %q", got, tc.reason)
			}
		})
	}
}

func TestFrontResponseFraming(t *testing.T) {
	origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		defer c.Close()
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/s/204":
				_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
			case "/s/304":
				_, _ = io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n")
			case "/s/early":
				_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			case "/s/close": // no length: the body ends when the connection does
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil close")
				return
			case "/s/badchunks":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
				return
			case "/s/gzip-te":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
				return
			}
		}
	})
	h := NewHandler(Options{MaxRetries: -1})
	h.SetTable(table("s", origin))
	url := behindFront(t, h)
	for _, tc := range []struct {
		path, body string
		code       int
		close      bool
	}{
		{"/s/204", "", 204, false},
		{"/s/304", "", 304, false},
		{"/s/early", "ok", 200, false},
		{"/s/close", "until close", 200, true},
		{"/s/badchunks", `{"error":"upstream failed","slug":"s"}` + "\n", 502, false},
		{"/s/gzip-te", `{"error":"upstream failed","slug":"s"}` + "\n", 502, false},
	} {
		c := dialRaw(t, url)
		c.send("GET " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.read("GET")
		if resp.StatusCode != tc.code || body != tc.body || resp.Close != tc.close {
			t.Errorf("%s: %d %q close %v; want %d %q close %v", tc.path, resp.StatusCode, body, resp.Close, tc.code, tc.body, tc.close)
		}
	}
	if got := handoffs(t, h); len(got) != 0 {
		t.Fatalf("handoffs %v, want none", got)
	}
}

func TestFrontWatcherKeepsPipelinedBytes(t *testing.T) {
	release := make(chan struct{})
	cancelled := make(chan struct{}, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/s/slow":
			<-release
		case "/s/hang":
			<-r.Context().Done()
			cancelled <- struct{}{}
			return
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	t.Cleanup(be.Close)
	h := NewHandler(Options{})
	h.SetTable(table("s", be.URL))
	url := behindFront(t, h)

	// A request sent while the previous one waits on its instance: the watcher
	// reads its first byte, which must not be lost.
	c := dialRaw(t, url)
	c.send("GET /s/slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(5 * watchAfter)
	c.send("GET /s/next HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(2 * watchAfter)
	close(release)
	for _, want := range []string{"/s/slow", "/s/next"} {
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}

	// A client that goes away while its instance is slow cancels the instance's request.
	c = dialRaw(t, url)
	c.send("GET /s/hang HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(2 * watchAfter)
	c.c.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance's request was not cancelled when the client went away")
	}
}

func TestFrontReadHeaderTimeoutOnKeepAliveConnections(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(be.Close)
	h := NewHandler(Options{ReadHeaderTimeout: 300 * time.Millisecond})
	h.SetTable(table("s", be.URL))
	c := dialRaw(t, behindFront(t, h))
	c.send("GET /s/a HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	// Idle is fine (the idle timeout is long); a head begun must end in time.
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	c.send("GET /s/b HTTP/1.1\r\nHo")
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatal("the connection answered a head that never ended")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a slow head held the connection for %v; the read-header timeout is 300ms", d)
	}
}

func TestFrontShutdownClosesIdleAndDrainsActive(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/s/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}))
	t.Cleanup(be.Close)
	h := NewHandler(Options{})
	h.SetTable(table("s", be.URL))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fe := newFront(h, newChanListener(ln.Addr()))
	go func() { _ = fe.serve(ln) }()
	url := "http://" + ln.Addr().String()

	silent := dialRaw(t, url) // connected, never sends: idle
	kept := dialRaw(t, url)   // one request done: idle between requests
	kept.send("GET /s/a HTTP/1.1\r\nHost: x\r\n\r\n")
	kept.read("GET")
	busy := dialRaw(t, url) // a request in flight: drained
	busy.send("GET /s/slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)

	ln.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- fe.shutdown(make(chan struct{})) }()
	for _, c := range []*rawConn{silent, kept} {
		if _, err := c.br.ReadByte(); err == nil {
			t.Fatal("an idle connection was not closed by shutdown")
		}
	}
	select {
	case err := <-stopped:
		t.Fatalf("shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || body != "done" || !resp.Close {
		t.Fatalf("request in flight at shutdown: %d %q close %v; want it answered, with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func TestFrontRelaysBodiesOfEverySize(t *testing.T) {
	pattern := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i%26)
		}
		return string(b)
	}
	be, conns := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/s/"), &n)
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush() // no Content-Length: chunked
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(n))
		}
		_, _ = io.WriteString(w, pattern(n))
	})
	h := NewHandler(Options{})
	h.SetTable(table("s", be.URL))
	c := dialRaw(t, behindFront(t, h))
	for _, n := range []int{0, 1, 16<<10 - 1, 16 << 10, 16<<10 + 1, 32 << 10, 100 << 10, 1 << 20} {
		for _, q := range []string{"", "?chunked"} {
			c.send(fmt.Sprintf("GET /s/%d%s HTTP/1.1\r\nHost: x\r\n\r\n", n, q))
			resp, body := c.read("GET")
			if resp.StatusCode != 200 || body != pattern(n) {
				t.Fatalf("%d bytes%s: %d, %d bytes back (equal: %v)", n, q, resp.StatusCode, len(body), body == pattern(n))
			}
		}
	}
	if got := conns.Load(); got != 1 {
		t.Fatalf("the instance got %d connections; want 1 (reused after every body)", got)
	}
}

// minimalOrigin answers every request with a fixed response and allocates nothing per request.
func minimalOrigin(t testing.TB) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 29 Nov 2026 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok")
	return rawOrigin(t, func(c net.Conn, _ *bufio.Reader) {
		var buf [4096]byte
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			if n >= 4 && string(buf[n-4:n]) == "\r\n\r\n" {
				n = 0
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
		}
	})
}

// roundTripper sends a fixed GET on one connection and reads the response, allocating nothing.
func roundTripper(t testing.TB, url string) func() {
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := []byte("GET /s/hello?x=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n")
	var buf [4096]byte
	return func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n := 0
		for n < 6 || string(buf[n-6:n]) != "\r\n\r\nok" {
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
	}
}

func TestFrontAllocatesNothingPerRequest(t *testing.T) {
	h := NewHandler(Options{})
	h.SetTable(table("s", minimalOrigin(t)))
	rt := roundTripper(t, behindFront(t, h))
	for range 100 {
		rt() // warm: buffers, pools, timers, metric series
	}
	// Counts every goroutine's allocations: the client's and the origin's are none.
	if a := testing.AllocsPerRun(2000, rt); a > 0.05 {
		t.Fatalf("%.2f allocations per proxied request; want none", a)
	}
}

// BenchmarkFront is one client connection through the front end to an origin
// that does nothing, all in this process: the front end's cost per request
// plus two loopback round trips.
func BenchmarkFront(b *testing.B) {
	h := NewHandler(Options{})
	h.SetTable(table("s", minimalOrigin(b)))
	rt := roundTripper(b, behindFront(b, h))
	b.ReportAllocs()
	for b.Loop() {
		rt()
	}
}

// TestFrontAnswersHeadWithoutBody: the proxy's own answer to HEAD has no body,
// so the next response on the connection is read right.
func TestFrontAnswersHeadWithoutBody(t *testing.T) {
	h := NewHandler(Options{})
	h.SetTable(table("s", minimalOrigin(t)))
	c := dialRaw(t, behindFront(t, h))
	c.send("HEAD /nope/x HTTP/1.1\r\nHost: x\r\n\r\nGET /s/x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.read("HEAD"); resp.StatusCode != 404 || body != "" {
		t.Fatalf("HEAD for an unknown slug: %d %q, want 404 and no body", resp.StatusCode, body)
	}
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("the next request: %d %q", resp.StatusCode, body)
	}
}

// A drain that begins after a response's head went out (keep-alive) and before
// the front end is done with the request does not close the connection under
// the client: its next request is answered, with Connection: close, and only
// then does the connection end. (Closing at once raced with that next request:
// TestShutdownDelayEndsKeepAliveConnections got "unexpected EOF" in CI.)
func TestDrainAfterKeepAliveResponseAnswersTheNextRequest(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer be.Close()
	var fe atomic.Pointer[front]
	var once sync.Once
	// The access log runs after the response's last byte went to the client and
	// before the front end reads the next request: begin the drain there.
	logger := funcr.New(func(_, args string) {
		if strings.Contains(args, `"access"`) {
			once.Do(func() { fe.Load().draining.Store(true) })
		}
	}, funcr.Options{})
	h := NewHandler(Options{AccessLog: true, Logger: logger})
	h.SetTable(table("s", be.URL))
	f, addr := startFront(t, h)
	fe.Store(f)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i, wantClose := range []bool{false, true} {
		if _, err := io.WriteString(c, "GET /s/x HTTP/1.1\r\nHost: p\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v (the connection closed under a keep-alive client)", i+1, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close != wantClose {
			t.Fatalf("request %d: %d, close=%v; want 200, close=%v", i+1, resp.StatusCode, resp.Close, wantClose)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after Connection: close the front end should close the connection, read: %v", err)
	}
}
