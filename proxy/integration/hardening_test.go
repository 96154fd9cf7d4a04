package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy"
)

// rawBackend records the raw header block and body of every request it receives, so a
// test can see exactly how the proxy framed what it forwarded.
type rawBackend struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []rawSeen
}

type rawSeen struct {
	line   string
	header textproto.MIMEHeader
	body   string
}

func newRawBackend(t *testing.T) *rawBackend {
	b := &rawBackend{ln: listen(t)}
	t.Cleanup(func() { _ = b.ln.Close() })
	go func() {
		for {
			c, err := b.ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *rawBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		tp := textproto.NewReader(br)
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			return
		}
		// Frame the body the way a strict origin would, from what the proxy sent.
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(line+"\r\n"+headerBlock(hdr)+"\r\n"), br)))
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		b.mu.Lock()
		b.seen = append(b.seen, rawSeen{line: line, header: hdr, body: string(body)})
		b.mu.Unlock()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func headerBlock(h textproto.MIMEHeader) string {
	var sb strings.Builder
	for k, vv := range h {
		for _, v := range vv {
			sb.WriteString(k + ": " + v + "\r\n")
		}
	}
	return sb.String()
}

func (b *rawBackend) requests() []rawSeen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]rawSeen(nil), b.seen...)
}

// exchange writes raw bytes to the proxy and returns the status code of its first response
// (0 if none came).
func exchange(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// Request smuggling shapes: every ambiguous framing is refused with 400 (501 for an
// unknown coding before a final chunked), Content-Length with Transfer-Encoding too
// (RFC 9112 6.3 lets a server refuse it, and nginx does); a chunked request is re-framed
// by the proxy, so the instance never sees both headers, never a body it could read
// differently, and never a request the client did not send.
func TestRequestSmugglingShapes(t *testing.T) {
	victim, other := newRawBackend(t), newRawBackend(t)
	createSlug(t, "smug-a")
	createSlug(t, "smug-b")
	createInstance(t, "smug-a", "smug-a-1", "http://"+victim.ln.Addr().String(), slugwayv1.HealthHealthy, "")
	createInstance(t, "smug-b", "smug-b-1", "http://"+other.ln.Addr().String(), slugwayv1.HealthHealthy, "")
	p := startProxy(t, proxy.Options{ReadHeaderTimeout: time.Second})
	waitRoute(t, p, "smug-a", 1)
	waitRoute(t, p, "smug-b", 1)

	refused := []struct {
		name, raw string
		want      int
	}{
		{"two different Content-Lengths", "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nContent-Length: 5\r\n\r\nhello!", 400},
		{"unknown transfer coding", "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400}, // chunked is not the final coding: RFC 9112 6.3
		{"unknown coding before chunked", "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"CL and TE together", "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunked not last", "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400},
		{"space before the colon", "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
		{"repeated chunked", "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"invalid Content-Length", "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400},
		{"encoded slash into another slug", "GET /smug-a%2F..%2Fsmug-b/x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"dot segments into another slug", "GET /smug-a/../smug-b/x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"encoded dots", "GET /%2e%2e/smug-b/x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"double slash", "GET //smug-b/x HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"absolute form", "GET http://evil/smug-b/x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"CONNECT", "CONNECT smug-b:80 HTTP/1.1\r\nHost: smug-b:80\r\n\r\n", 405},
		{"unicode case folding", "GET /smug-%C5%BF/x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"upper case slug", "GET /SMUG-B/x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	}
	for _, c := range refused {
		if code := exchange(t, p.Addr(), c.raw); code != c.want {
			t.Errorf("%s: answered %d, want %d", c.name, code, c.want)
		}
	}

	// A chunked request the instance gets: framed by the proxy, body decoded.
	if code := exchange(t, p.Addr(), "POST /smug-a/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"); code != 200 {
		t.Fatalf("chunked request: %d", code)
	}
	// An invalid chunk size never reaches the instance as a complete request.
	_ = exchange(t, p.Addr(), "POST /smug-a/y HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n")

	sawX := 0
	for _, r := range victim.requests() {
		if r.header.Get("Content-Length") != "" && r.header.Get("Transfer-Encoding") != "" {
			t.Errorf("the instance got both Content-Length and Transfer-Encoding: %q %v", r.line, r.header)
		}
		if strings.HasPrefix(r.line, "POST /smug-a/x ") {
			sawX++
			if r.body != "hello" {
				t.Errorf("the instance read body %q, want the chunked body %q", r.body, "hello")
			}
		}
		if strings.HasPrefix(r.line, "POST /smug-a/y ") {
			t.Errorf("a request with a broken chunked body reached the instance complete: body %q", r.body)
		}
	}
	if sawX != 1 {
		t.Errorf("%d requests reached the instance, want 1: the chunked one (every refused one must not)", sawX)
	}
	if got := other.requests(); len(got) != 0 {
		t.Errorf("slug smug-b got %d requests it was never sent: %q", len(got), got[0].line)
	}
}

// Slowloris: a client that sends its headers a byte at a time is cut off at the read-header timeout.
func TestSlowHeadersAreCutOff(t *testing.T) {
	p := startProxy(t, proxy.Options{ReadHeaderTimeout: time.Second})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "GET /x/ HTTP/1.1\r\nHost: x\r\n")
	closed := false
	for i := 0; i < 100 && !closed; i++ {
		time.Sleep(100 * time.Millisecond)
		if _, err := io.WriteString(c, "X-Slow: 1\r\n"); err != nil {
			closed = true
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 512)); err != nil && !isTimeout(err) {
			closed = true
		}
	}
	took := time.Since(start)
	if !closed {
		t.Fatalf("a client trickling headers for %s still holds its connection", took)
	}
	t.Logf("trickling client cut off after %s (read-header timeout 1s)", took.Round(100*time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("cut off only after %s", took)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
