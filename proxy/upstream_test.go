package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// behindServer puts h behind net/http's server: the path of connections the
// fast front end hands off, and of TLS ones.
func behindServer(t testing.TB, h *Handler) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// bothServers runs f with h served by net/http alone, and by the fast front end
// (which hands net/http what it does not serve), as in production.
func bothServers(t *testing.T, f func(t *testing.T, serve func(testing.TB, *Handler) string)) {
	t.Run("net-http", func(t *testing.T) { f(t, behindServer) })
	t.Run("front", func(t *testing.T) { f(t, behindFront) })
}

// countingOrigin is an httptest origin that counts the connections it accepted.
func countingOrigin(t *testing.T, hf http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(hf)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

func get(t *testing.T, c *http.Client, method, url string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestFastPathReusesConnections(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		be, conns := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.Method+" "+r.RequestURI)
		})
		h := NewHandler(Options{})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		for i := range 50 {
			code, body := get(t, http.DefaultClient, "GET", fmt.Sprintf("%s/s/x?i=%d", url, i), nil)
			if code != 200 || body != fmt.Sprintf("GET /s/x?i=%d", i) {
				t.Fatalf("request %d: %d %q", i, code, body)
			}
		}
		code, _ := get(t, http.DefaultClient, "HEAD", url+"/s/x", nil)
		code2, body := get(t, http.DefaultClient, "POST", url+"/s/x", strings.NewReader("payload"))
		if code != 200 || code2 != 200 || body != "POST /s/x" {
			t.Fatalf("HEAD %d, POST %d %q", code, code2, body)
		}
		if n := conns.Load(); n != 1 {
			t.Fatalf("52 sequential requests used %d upstream connections; want 1 reused", n)
		}
		b := h.table.Load().routes["s"].backends[0]
		if b.pool == nil || b.pool.idleCount() != 1 {
			t.Fatal("the connection is not back in the pool")
		}
	})
}

func TestFastPathConnectionClose(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		be, conns := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		})
		h := NewHandler(Options{})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		for i := range 5 {
			resp, err := http.Get(url + "/s/x")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "bye" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
			}
			if resp.Header.Get("Connection") != "" {
				t.Fatal("the instance's Connection header (hop-by-hop) reached the client")
			}
		}
		if n := conns.Load(); n != 5 {
			t.Fatalf("an instance that says Connection: close got %d connections for 5 requests; want 5 (never reused)", n)
		}
		if n := h.table.Load().routes["s"].backends[0].pool.idleCount(); n != 0 {
			t.Fatalf("%d closed connections kept in the pool", n)
		}
	})
}

// rawOrigin serves each connection with fn (for responses net/http's server won't produce).
func rawOrigin(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestFastPathSkipsInformationalResponses(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
					"HTTP/1.1 100 Continue\r\n\r\n"+
					"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok")
			}
		})
		h := NewHandler(Options{})
		h.SetTable(table("s", origin))
		url := behindServer(t, h)
		for range 2 { // the second on the reused connection: nothing of the 1xx is left over
			req, _ := http.NewRequest("GET", url+"/s/x", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "ok" || resp.Header.Get("X-Final") != "1" {
				t.Fatalf("got %d %q %v; want the final 200", resp.StatusCode, b, resp.Header)
			}
		}
	})
}

func TestExpectContinueTakesTheTransport(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		be, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			_, _ = fmt.Fprintf(w, "%s %d", r.Header.Get("Expect"), len(b))
		})
		h := NewHandler(Options{})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		req, _ := http.NewRequest("PUT", url+"/s/x", strings.NewReader(strings.Repeat("a", 5000)))
		req.Header.Set("Expect", "100-continue")
		c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "100-continue 5000" {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
	})
}

func TestFastPathRequestBodies(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		firstChunk := make(chan struct{})
		be, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			br := bufio.NewReader(r.Body)
			line, _ := br.ReadString('\n')
			if line == "first\n" {
				close(firstChunk) // arrived while the client still holds the rest back
			}
			rest, _ := io.ReadAll(br)
			_, _ = fmt.Fprintf(w, "%q cl=%d te=%v %d", line, r.ContentLength, r.TransferEncoding, len(rest))
		})
		h := NewHandler(Options{})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)

		// Known length.
		code, body := get(t, http.DefaultClient, "POST", url+"/s/x", strings.NewReader("line\n"+strings.Repeat("b", 100000)))
		if code != 200 || body != `"line\n" cl=100005 te=[] 100000` {
			t.Fatalf("known length: %d %s", code, body)
		}

		// Unknown length: chunked, streamed piece by piece.
		pr, pw := io.Pipe()
		go func() {
			_, _ = io.WriteString(pw, "first\n")
			select {
			case <-firstChunk:
			case <-time.After(10 * time.Second):
			}
			_, _ = io.WriteString(pw, strings.Repeat("c", 70000))
			pw.Close()
		}()
		code, body = get(t, http.DefaultClient, "POST", url+"/s/x", pr)
		if code != 200 || body != `"first\n" cl=-1 te=[chunked] 70000` {
			t.Fatalf("chunked: %d %s", code, body)
		}
		select {
		case <-firstChunk:
		default:
			t.Fatal("the first chunk did not reach the instance before the body ended: the body was buffered")
		}
	})
}

// TestFastPathStaleConnection: an instance closes a pooled connection while it is
// idle. An idempotent request on it is retried on a fresh connection; a POST is
// never replayed, and the pool checks a connection is alive before sending one.
func TestFastPathStaleConnection(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		var mu sync.Mutex
		seen := map[string]int{}
		closed := make(chan struct{}, 10)
		origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
			// Keep-alive is promised, but the connection closes after one exchange
			// (an instance whose idle timeout is shorter than the proxy's).
			defer func() { c.Close(); closed <- struct{}{} }()
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			mu.Lock()
			seen[req.Method+" "+req.URL.Path]++
			mu.Unlock()
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		})
		h := NewHandler(Options{})
		h.SetTable(table("s", origin))
		url := behindServer(t, h)
		pool := h.table.Load().routes["s"].backends[0].pool
		waitStale := func() {
			t.Helper()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("the instance did not close its connection")
			}
			if pool.idleCount() != 1 {
				t.Fatalf("pool holds %d connections, want the 1 the instance closed", pool.idleCount())
			}
		}

		if code, _ := get(t, http.DefaultClient, "GET", url+"/s/a", nil); code != 200 {
			t.Fatalf("first GET: %d", code)
		}
		waitStale()
		if code, body := get(t, http.DefaultClient, "GET", url+"/s/b", nil); code != 200 || body != "ok" {
			t.Fatalf("GET on a stale pooled connection: %d %q; want it retried on a fresh one", code, body)
		}
		waitStale()
		if code, body := get(t, http.DefaultClient, "POST", url+"/s/c", strings.NewReader("x")); code != 200 || body != "ok" {
			t.Fatalf("POST after the instance closed the pooled connection: %d %q; want a fresh connection", code, body)
		}
		// Now the instance drops a POST it received, on a reused connection: a 502,
		// and the POST reached it exactly once.
		h2 := NewHandler(Options{})
		keep := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				mu.Lock()
				seen["keep "+req.Method+" "+req.URL.Path]++
				mu.Unlock()
				if req.URL.Path == "/s/drop" {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		h2.SetTable(table("s", keep))
		url2 := behindServer(t, h2)
		if code, _ := get(t, http.DefaultClient, "GET", url2+"/s/warm", nil); code != 200 {
			t.Fatalf("warm-up GET: %d", code)
		}
		if code, _ := get(t, http.DefaultClient, "POST", url2+"/s/drop", strings.NewReader("once")); code != http.StatusBadGateway {
			t.Fatalf("POST the instance dropped: %d, want 502", code)
		}
		if code, _ := get(t, http.DefaultClient, "POST", url2+"/s/drop", nil); code != http.StatusBadGateway {
			t.Fatalf("bodiless POST the instance dropped: %d, want 502", code)
		}
		mu.Lock()
		defer mu.Unlock()
		if n := seen["keep POST /s/drop"]; n != 2 {
			t.Fatalf("the instance saw the two dropped POSTs %d times; want 2 (never replayed)", n)
		}
		if seen["GET /s/b"] != 1 || seen["POST /s/c"] != 1 {
			t.Fatalf("requests seen: %v", seen)
		}
	})
}

func TestFastPathIdleTimeoutClosesPooledConnections(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
		var open atomic.Int32
		be.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
		be.Start()
		t.Cleanup(be.Close)
		h := NewHandler(Options{UpstreamIdleTimeout: 50 * time.Millisecond})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		if code, _ := get(t, http.DefaultClient, "GET", url+"/s/x", nil); code != 200 {
			t.Fatal(code)
		}
		pool := h.table.Load().routes["s"].backends[0].pool
		deadline := time.Now().Add(10 * time.Second)
		for pool.idleCount() != 0 || open.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("after the idle timeout: %d pooled, %d open at the instance; want 0", pool.idleCount(), open.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}

		// An instance leaving the table closes its idle connections.
		if code, _ := get(t, http.DefaultClient, "GET", url+"/s/x", nil); code != 200 {
			t.Fatal(code)
		}
		h.SetTable(table("other", be.URL))
		for open.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the pool of an instance that left the table kept its connections")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestWriteOutHeaderMatchesOutHeader: the fast path writes the same header fields
// as the Transport path sends.
func TestWriteOutHeaderMatchesOutHeader(t *testing.T) {
	h := NewHandler(Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	cases := []struct {
		remote string
		hdr    http.Header
	}{
		{"10.1.2.3:5", http.Header{"Connection": {"keep-alive, X-Drop"}, "X-Drop": {"1"}, "Te": {"trailers, deflate"}, "Upgrade": {"h2c"},
			"X-Forwarded-For": {"1.1.1.1", "2.2.2.2"}, "X-Forwarded-Proto": {"https"}, "Cookie": {"a=1", "b=2"}, "Forwarded": {"for=x"}}},
		{"192.0.2.1:5", http.Header{"X-Forwarded-For": {"1.1.1.1"}, "X-Forwarded-Host": {"evil"}, "Forwarded": {"for=x"},
			"User-Agent": {"ua"}, "Keep-Alive": {"timeout=5"}, "Proxy-Authorization": {"x"}, "Accept": {"*/*"}}},
		{"[2001:db8::1]:5", http.Header{"Content-Length": {"3"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}, "Te": {"gzip"}}},
		{"10.0.0.1:1", http.Header{"X-Forwarded-Host": {"orig"}, "Connection": {"X-Forwarded-Host"}}},
	}
	for i, c := range cases {
		r := httptest.NewRequest("GET", "/s/x", nil)
		r.Header, r.RemoteAddr, r.Host = c.hdr, c.remote, "front.example"
		want := h.testOutHeader(r)
		if ua := want["User-Agent"]; len(ua) == 1 && ua[0] == "" {
			delete(want, "User-Agent") // the Transport's way of sending none
		}
		delete(want, "Content-Length") // the Transport writes its own from ContentLength, as the fast path does
		var sb strings.Builder
		bw := bufio.NewWriter(&sb)
		if err := h.testWriteOutHeader(bw, r); err != nil {
			t.Fatal(err)
		}
		bw.WriteString("\r\n")
		bw.Flush()
		got, err := textproto.NewReader(bufio.NewReader(strings.NewReader(sb.String()))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("case %d: %v in %q", i, err, sb.String())
		}
		if !reflect.DeepEqual(http.Header(got), want) {
			t.Errorf("case %d:\n fast path  %v\n transport %v", i, got, want)
		}
	}
}

func TestFastPathBoundsResponseHeaders(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			line := "X-Big: " + strings.Repeat("a", 1000) + "\r\n"
			for { // headers that never end, until the proxy hangs up
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		})
		// Without the bound, the proxy would read until the header timeout (504).
		h := NewHandler(Options{ResponseHeaderTimeout: 5 * time.Second})
		h.SetTable(table("s", origin))
		if code, _ := get(t, http.DefaultClient, "GET", behindServer(t, h)+"/s/x", nil); code != http.StatusBadGateway {
			t.Fatalf("endless response headers: %d, want 502 once past the bound", code)
		}
	})
}

func TestPooledOnlyForPlainTargets(t *testing.T) {
	h := NewHandler(Options{})
	req := func(target string, hdr http.Header) *request {
		r := httptest.NewRequest("GET", "/s/x", nil)
		r.RequestURI = target
		r.Header = hdr
		pr := h.newRequest(nil, r, new(handlerDeadline))
		if res := h.lookup(pr); res.code != 0 && res.code != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d %s", target, res.code, res.msg)
		}
		return pr
	}
	if !pooled(req("/s/x?a=1&b=%20", http.Header{})) {
		t.Fatal("a plain request must take the upstream client")
	}
	for _, target := range []string{"/s/a b", "/s/x?a=\tb", "/s/x?a=\x7f", "/s/x?a b"} {
		pr := h.newRequest(nil, httptest.NewRequest("GET", "/s/x", nil), new(handlerDeadline))
		pr.target, _ = parseTarget("/s/x")
		p, q, _ := strings.Cut(strings.TrimPrefix(target, "/s/x"), "?")
		if strings.HasPrefix(target, "/s/a") {
			pr.target.path = target
		} else {
			pr.target.path += p
			pr.target.query, pr.target.hasQuery = q, true
		}
		if pooled(pr) {
			t.Errorf("target %q would be written raw into the request line", target)
		}
	}
	if pooled(req("/s/x", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}})) {
		t.Error("upgrades take the Transport")
	}
	if pooled(req("/s/x", http.Header{"Expect": {"100-continue"}})) {
		t.Error("Expect: 100-continue takes the Transport")
	}
}

// TestOneResponseHeadLimit: the limit on an instance's response head is the
// same whichever server parsed the request: a 40 KiB head (larger than a
// connection's 16 KiB buffer) is relayed whole, a 1 MiB one is a 502, and
// MaxResponseHeaderBytes moves the line.
func TestOneResponseHeadLimit(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		origin := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				n := 40 << 10
				if req.URL.Path == "/s/huge" {
					n = 1 << 20
				}
				head := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", n) + "\r\nContent-Length: 2\r\n\r\nok"
				if _, err := io.WriteString(c, head); err != nil {
					return
				}
			}
		})
		for _, tc := range []struct {
			limit      int
			path       string
			code, xbig int
		}{
			{0, "/s/big", 200, 40 << 10},
			{0, "/s/huge", http.StatusBadGateway, 0},
			{32 << 10, "/s/big", http.StatusBadGateway, 0},
			{2 << 20, "/s/huge", 200, 1 << 20},
		} {
			h := NewHandler(Options{MaxResponseHeaderBytes: tc.limit, MaxRetries: -1})
			h.SetTable(table("s", origin))
			resp, err := http.Get(behindServer(t, h) + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || len(resp.Header.Get("X-Big")) != tc.xbig || (tc.code == 200 && string(b) != "ok") {
				t.Errorf("limit %d, %s: %d with a %d-byte X-Big, body %q; want %d and %d bytes",
					tc.limit, tc.path, resp.StatusCode, len(resp.Header.Get("X-Big")), b, tc.code, tc.xbig)
			}
		}
	})
}

// eventsOrigin answers two server-sent events, chunked, and a trailer. For
// /s/events it writes the second only after a receive from next.
func eventsOrigin(next <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		if r.URL.Path == "/s/events" {
			<-next // the client must have the first event before the second is written
		}
		_, _ = io.WriteString(w, "data: two\n\n")
		w.Header().Set("X-Sum", "42")
	}
}

// TestStreamedChunkedResponsesWithTrailers: on both servers, a chunked
// response stays chunked and streams (the first event arrives before the second is written), its
// trailers arrive, and the instance's connection is reused afterwards.
func TestStreamedChunkedResponsesWithTrailers(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		next := make(chan struct{}, 1)
		be, conns := countingOrigin(t, eventsOrigin(next))
		h := NewHandler(Options{})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		resp, err := http.Get(url + "/s/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("transfer encoding %v, want chunked", resp.TransferEncoding)
		}
		first := make([]byte, len("data: one\n\n"))
		if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data: one\n\n" {
			t.Fatalf("first event %q: %v", first, err)
		}
		next <- struct{}{}
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(rest) != "data: two\n\n" || resp.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("rest %q trailer %v: %v", rest, resp.Trailer, err)
		}
		if code, body := get(t, http.DefaultClient, "GET", url+"/s/again", nil); code != 200 || body != "data: one\n\ndata: two\n\n" {
			t.Fatalf("second request: %d %q", code, body)
		}
		if n := conns.Load(); n != 1 {
			t.Errorf("the instance saw %d connections, want 1 (reused after the trailers)", n)
		}
	})
}
