package framing_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slugway/slugway/proxy/framing"
)

// listener wraps every accepted connection in a framing.Conn, as the proxy
// does for the connections net/http serves.
type listener struct {
	net.Listener
	mu    sync.Mutex
	conns []*framing.Conn
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := framing.NewConn(c, 64<<10)
	l.mu.Lock()
	l.conns = append(l.conns, fc)
	l.mu.Unlock()
	return fc, nil
}

type seen struct {
	mu   sync.Mutex
	reqs []string
}

// serve runs a net/http server behind framing.Conn whose handler records each
// request (method, path, body) and answers with it.
func serve(t *testing.T) (addr string, s *seen) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s = &seen{}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec := r.Method + " " + r.URL.Path + " " + string(b)
		s.mu.Lock()
		s.reqs = append(s.reqs, rec)
		s.mu.Unlock()
		fmt.Fprint(w, rec)
	})}
	go func() { _ = srv.Serve(&listener{Listener: ln}) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), s
}

func (s *seen) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// send writes raw in one piece (or a byte at a time), then reads responses
// until the server closes or is quiet.
func send(t *testing.T, addr, raw string, bytewise bool) (statuses []int, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if bytewise {
		for i := 0; i < len(raw); i++ {
			if _, err := c.Write([]byte{raw[i]}); err != nil {
				break // closed by the server after a refusal
			}
		}
	} else if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := br.Peek(1); err != nil {
			ne, ok := err.(net.Error)
			return statuses, bodies, !(ok && ne.Timeout())
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading a response: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses, bodies = append(statuses, resp.StatusCode), append(bodies, string(b))
	}
}

func TestRefusedHeadsNeverReachNetHTTP(t *testing.T) {
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"CL and TE", "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 43\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE and CL", "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"two Content-Lengths", "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + smuggled, 400},
		{"obs-fold", "GET /a HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n" + smuggled, 400},
		{"bare LF", "GET /a HTTP/1.1\nHost: a\n\n" + smuggled, 400},
		{"bare CR", "GET /a HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n" + smuggled, 400},
		{"NUL", "GET /a HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n" + smuggled, 400},
		{"chunked, identity", "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"gzip, chunked", "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
	} {
		for _, bytewise := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/bytewise=%v", tc.name, bytewise), func(t *testing.T) {
				addr, s := serve(t)
				// A good request first, on the same connection: it is answered,
				// then the refusal, then the connection closes.
				statuses, _, closed := send(t, addr, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"+tc.raw, bytewise)
				if len(statuses) != 2 || statuses[0] != 200 || statuses[1] != tc.status || !closed {
					t.Fatalf("answers %v, closed %v; want [200 %d], closed", statuses, closed, tc.status)
				}
				if got := s.get(); len(got) != 1 || got[0] != "GET /first " {
					t.Fatalf("the handler saw %q, want only the first request", got)
				}
			})
		}
	}
}

// Bodies are followed: bytes inside a Content-Length or chunked body that
// look like requests stay body, and the requests after them are served.
func TestBodiesAreFollowed(t *testing.T) {
	fake := "GET /fake HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	raw := "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: " + fmt.Sprint(len(fake)) + "\r\n\r\n" + fake +
		"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x", len(fake)) + ";ext=1\r\n" + fake + "\r\n0\r\nX-Trailer: 1\r\n\r\n" +
		"GET /last HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, bytewise := range []bool{false, true} {
		addr, s := serve(t)
		statuses, bodies, _ := send(t, addr, raw, bytewise)
		want := []string{"POST /cl " + fake, "POST /chunked " + fake, "GET /last "}
		if len(statuses) != 3 || strings.Join(bodies, "|") != strings.Join(want, "|") {
			t.Fatalf("bytewise %v: answers %v %q, want 3: %q", bytewise, statuses, bodies, want)
		}
		if got := s.get(); len(got) != 3 {
			t.Fatalf("handler saw %q", got)
		}
	}
}

// HTTP/2 with prior knowledge passes (the preface is not an HTTP/1 head), and
// so do heads too large to check (net/http answers 431).
func TestPrefaceAndLargeHeads(t *testing.T) {
	addr, _ := serve(t)
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	resp, err := c.Get("http://" + addr + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "GET /h2 " {
		t.Fatalf("h2c: %s %q", resp.Proto, b)
	}
	statuses, _, _ := send(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nX: "+strings.Repeat("x", 2<<20)+"\r\n\r\n", false)
	if len(statuses) != 1 || statuses[0] != 431 {
		t.Fatalf("large head: %v, want [431]", statuses)
	}
}
