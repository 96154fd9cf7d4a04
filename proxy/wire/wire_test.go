package wire_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/slugway/slugway/proxy/wire"
)

const maxHead = 8 << 10

// ---- ParseRequest ----

func TestParseRequestPlainGET(t *testing.T) {
	head := "GET /index.html?q=1&r=%20 HTTP/1.1\r\n" +
		"Host: example.com:8080\r\n" +
		"User-Agent: test/1.0\r\n" +
		"Accept: */*\r\n" +
		"X-Empty:\r\n" +
		"X-Pad: \t padded  value \t\r\n" +
		"Cookie: a=1\r\n" +
		"Cookie: b=2\r\n" +
		"\r\n"
	pipelined := "GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n"
	// Reuse a Request holding stale state: ParseRequest must reset all of it.
	r := wire.Request{
		Method: "X", Target: "X", Host: "X", ContentLength: 7, Close: true, Unusual: "stale",
		Fields: []wire.Field{{"Old", "old"}}, Conn: []string{"old"},
	}
	n, err := wire.ParseRequest([]byte(head+pipelined), maxHead, &r)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(head) {
		t.Fatalf("n = %d, want %d (pipelined bytes must be left unconsumed)", n, len(head))
	}
	if r.Unusual != "" {
		t.Fatalf("Unusual = %q, want plain", r.Unusual)
	}
	if r.Method != "GET" || r.Target != "/index.html?q=1&r=%20" || r.Host != "example.com:8080" {
		t.Fatalf("Method %q Target %q Host %q", r.Method, r.Target, r.Host)
	}
	want := []wire.Field{
		{"Host", "example.com:8080"},
		{"User-Agent", "test/1.0"},
		{"Accept", "*/*"},
		{"X-Empty", ""},
		{"X-Pad", "padded  value"},
		{"Cookie", "a=1"},
		{"Cookie", "b=2"},
	}
	if !reflect.DeepEqual(r.Fields, want) {
		t.Fatalf("Fields = %q, want %q", r.Fields, want)
	}
	if r.ContentLength != -1 || r.Close || len(r.Conn) != 0 {
		t.Fatalf("ContentLength %d Close %v Conn %q", r.ContentLength, r.Close, r.Conn)
	}

	// The pipelined request parses from where the first one ended.
	n2, err := wire.ParseRequest([]byte(head + pipelined)[n:], maxHead, &r)
	if err != nil || n2 != len(pipelined) || r.Unusual != "" || r.Target != "/next" {
		t.Fatalf("pipelined: n %d err %v Unusual %q Target %q", n2, err, r.Unusual, r.Target)
	}
	if len(r.Fields) != 1 {
		t.Fatalf("pipelined: stale fields kept: %q", r.Fields)
	}
}

func TestParseRequestPOST(t *testing.T) {
	head := "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
	var r wire.Request
	n, err := wire.ParseRequest([]byte(head+"hello world"), maxHead, &r)
	if err != nil || n != len(head) {
		t.Fatalf("n %d err %v, want %d", n, err, len(head))
	}
	if r.Unusual != "" || r.Method != "POST" || r.ContentLength != 11 {
		t.Fatalf("Unusual %q Method %q ContentLength %d", r.Unusual, r.Method, r.ContentLength)
	}
	for _, cl := range []string{"0", "00", "123456789012345678"} {
		head := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + cl + "\r\n\r\n"
		n, err := wire.ParseRequest([]byte(head), maxHead, &r)
		if err != nil || n != len(head) || r.Unusual != "" {
			t.Fatalf("CL %q: n %d err %v Unusual %q", cl, n, err, r.Unusual)
		}
	}
	if r.ContentLength != 123456789012345678 {
		t.Fatalf("ContentLength %d", r.ContentLength)
	}
}

func TestParseRequestLowerCaseNames(t *testing.T) {
	head := "PUT /x HTTP/1.1\r\nHOST: h\r\ncontent-length: 3\r\nconnection: CLOSE\r\n\r\n"
	var r wire.Request
	n, err := wire.ParseRequest([]byte(head+"abc"), maxHead, &r)
	if err != nil || n != len(head) || r.Unusual != "" {
		t.Fatalf("n %d err %v Unusual %q", n, err, r.Unusual)
	}
	if r.Host != "h" || r.ContentLength != 3 || !r.Close || !reflect.DeepEqual(r.Conn, []string{"CLOSE"}) {
		t.Fatalf("Host %q ContentLength %d Close %v Conn %q", r.Host, r.ContentLength, r.Close, r.Conn)
	}
	if r.Fields[0] != (wire.Field{"HOST", "h"}) || r.Fields[1] != (wire.Field{"content-length", "3"}) {
		t.Fatalf("names must keep the sender's case: %q", r.Fields)
	}
}

func TestParseRequestConnection(t *testing.T) {
	for _, tc := range []struct {
		fields string
		close  bool
		conn   []string
	}{
		{"Connection: close\r\n", true, []string{"close"}},
		{"Connection: keep-alive, Close\r\n", true, []string{"keep-alive, Close"}},
		{"Connection: X-Hop\r\nConnection: ,close ,\r\n", true, []string{"X-Hop", ",close ,"}},
		{"Connection: keep-alive\r\n", false, []string{"keep-alive"}},
		{"Connection: closed, x-close\r\n", false, []string{"closed, x-close"}},
	} {
		head := "GET / HTTP/1.1\r\nHost: a\r\n" + tc.fields + "\r\n"
		var r wire.Request
		n, err := wire.ParseRequest([]byte(head), maxHead, &r)
		if err != nil || n != len(head) || r.Unusual != "" {
			t.Fatalf("%q: n %d err %v Unusual %q", tc.fields, n, err, r.Unusual)
		}
		if r.Close != tc.close || !reflect.DeepEqual(r.Conn, tc.conn) {
			t.Errorf("%q: Close %v Conn %q, want %v %q", tc.fields, r.Close, r.Conn, tc.close, tc.conn)
		}
	}
}

func TestParseRequestUnusual(t *testing.T) {
	const h = "Host: a\r\n"
	for _, tc := range []struct{ name, head string }{
		{"HTTP/1.0", "GET / HTTP/1.0\r\n" + h + "\r\n"},
		{"HTTP/1.2", "GET / HTTP/1.2\r\n" + h + "\r\n"},
		{"lower-case version", "GET / http/1.1\r\n" + h + "\r\n"},
		{"absolute-form", "GET http://a/x HTTP/1.1\r\n" + h + "\r\n"},
		{"asterisk-form", "OPTIONS * HTTP/1.1\r\n" + h + "\r\n"},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"},
		{"CONNECT with a path", "CONNECT /rpc HTTP/1.1\r\n" + h + "\r\n"},
		{"PRI preface", "PRI * HTTP/2.0\r\n\r\n"},
		{"PRI origin-form", "PRI / HTTP/1.1\r\n" + h + "\r\n"},
		{"Transfer-Encoding", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n"},
		{"transfer-encoding lower", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: chunked\r\n\r\n"},
		{"TE and CL", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"Upgrade", "GET / HTTP/1.1\r\n" + h + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{"Upgrade alone", "GET / HTTP/1.1\r\n" + h + "Upgrade: h2c\r\n\r\n"},
		{"Connection: upgrade alone", "GET / HTTP/1.1\r\n" + h + "Connection: keep-alive, upgrade\r\n\r\n"},
		{"Expect", "PUT / HTTP/1.1\r\n" + h + "Content-Length: 1\r\nExpect: 100-continue\r\n\r\n"},
		{"Trailer", "POST / HTTP/1.1\r\n" + h + "Trailer: X-Sum\r\n\r\n"},
		{"two Host", "GET / HTTP/1.1\r\n" + h + "Host: b\r\n\r\n"},
		{"two Host same value", "GET / HTTP/1.1\r\n" + h + "host: a\r\n\r\n"},
		{"two HOST", "GET / HTTP/1.1\r\nHOST: a\r\nhost: a\r\n\r\n"},
		{"no Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"},
		{"no fields", "GET / HTTP/1.1\r\n\r\n"},
		{"two Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n"},
		{"two equal Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\ncontent-length: 1\r\n\r\n"},
		{"Content-Length 1x", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1x\r\n\r\n"},
		{"Content-Length empty", "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n"},
		{"Content-Length -1", "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n"},
		{"Content-Length +1", "POST / HTTP/1.1\r\n" + h + "Content-Length: +1\r\n\r\n"},
		{"Content-Length 1 2", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1 2\r\n\r\n"},
		{"Content-Length list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1, 1\r\n\r\n"},
		{"Content-Length 19 digits", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1234567890123456789\r\n\r\n"},
		{"Content-Length lower bad", "POST / HTTP/1.1\r\n" + h + "content-length: x\r\n\r\n"},
		{"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n b\r\n\r\n"},
		{"obs-fold tab", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n\tb\r\n\r\n"},
		{"first field folded", "GET / HTTP/1.1\r\n Host: a\r\n\r\n"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
		{"space in name", "GET / HTTP/1.1\r\n" + h + "X A: a\r\n\r\n"},
		{"no colon", "GET / HTTP/1.1\r\n" + h + "X-A\r\n\r\n"},
		{"empty name", "GET / HTTP/1.1\r\n" + h + ": a\r\n\r\n"},
		{"bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n"},
		{"bare LF on request line", "GET / HTTP/1.1\n" + h + "\r\n"},
		{"bare LF on a field", "GET / HTTP/1.1\r\nHost: a\n\r\n"},
		{"bare LF ending the head", "GET / HTTP/1.1\r\n" + h + "\n"},
		{"leading blank line", "\r\nGET / HTTP/1.1\r\n" + h + "\r\n"},
		{"leading bare LF", "\nGET / HTTP/1.1\r\n" + h + "\r\n"},
		{"CR CR LF", "GET / HTTP/1.1\r\n" + h + "X: a\r\r\n\r\n"},
		{"control char in value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x01b\r\n\r\n"},
		{"NUL in value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x00b\r\n\r\n"},
		{"DEL in value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x7fb\r\n\r\n"},
		{"CR in value", "GET / HTTP/1.1\r\n" + h + "X-A: a\rb\r\n\r\n"},
		{"control char in Host", "GET / HTTP/1.1\r\nHost: a\x1b\r\n\r\n"},
		{"double space", "GET  / HTTP/1.1\r\n" + h + "\r\n"},
		{"trailing space", "GET / HTTP/1.1 \r\n" + h + "\r\n"},
		{"no version", "GET /\r\n" + h + "\r\n"},
		{"leading space", " GET / HTTP/1.1\r\n" + h + "\r\n"},
		{"bad method char", "G(T / HTTP/1.1\r\n" + h + "\r\n"},
		{"control char in target", "GET /a\x01b HTTP/1.1\r\n" + h + "\r\n"},
		{"DEL in target", "GET /a\x7f HTTP/1.1\r\n" + h + "\r\n"},
		{"tab in request line", "GET\t/ HTTP/1.1\r\n" + h + "\r\n"},
		// net/http answers these 400 (ReadRequest: invalid URL escape; its
		// Server: malformed Host header), so the fast path must not take them.
		{"bad percent-escape", "GET /a%zz HTTP/1.1\r\n" + h + "\r\n"},
		{"truncated percent-escape", "GET /a% HTTP/1.1\r\n" + h + "\r\n"},
		{"space in Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{"bad char in Host", "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const extra = "XYZ\r\n\r\n"
			r := wire.Request{Unusual: ""}
			n, err := wire.ParseRequest([]byte(tc.head+extra), maxHead, &r)
			if err != nil {
				t.Fatalf("err %v", err)
			}
			if n != len(tc.head) {
				t.Fatalf("n = %d, want %d", n, len(tc.head))
			}
			if r.Unusual == "" {
				t.Fatalf("%q is plain, want Unusual", tc.head)
			}
			// The verdict must not depend on the bytes after the head.
			var r2 wire.Request
			if n2, err := wire.ParseRequest([]byte(tc.head), maxHead, &r2); n2 != n || err != nil || r2.Unusual != r.Unusual {
				t.Fatalf("head alone: n %d err %v Unusual %q; with extra: Unusual %q", n2, err, r2.Unusual, r.Unusual)
			}
		})
	}
}

func TestParseRequestIncomplete(t *testing.T) {
	for _, b := range []string{
		"",
		"G",
		"GET / HTTP/1.1",
		"GET / HTTP/1.1\r",
		"GET / HTTP/1.1\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r",
		"\r\n",
		"\r\n\r\n",
		"\n\n\n",
		"GET / HTTP/1.1\nHost: a\n",
	} {
		var r wire.Request
		n, err := wire.ParseRequest([]byte(b), maxHead, &r)
		if n != 0 || !errors.Is(err, wire.ErrIncomplete) {
			t.Errorf("%q: n %d err %v, want ErrIncomplete", b, n, err)
		}
	}
}

func TestParseRequestTooLarge(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + strings.Repeat("v", 100) + "\r\n\r\n"
	var r wire.Request
	for _, tc := range []struct {
		b   string
		max int
		n   int
		err error
	}{
		{head, len(head), len(head), nil},                         // ends exactly at max
		{head + "GET /", len(head), len(head), nil},               // more bytes after, still fine
		{head, len(head) - 1, 0, wire.ErrTooLarge},                // ends one byte beyond max
		{head + "GET / HTTP", len(head) - 1, 0, wire.ErrTooLarge}, //
		{head, 20, 0, wire.ErrTooLarge},                           // ends far beyond max
		{head[:50], 50, 0, wire.ErrTooLarge},                      // max bytes hold no end
		{head[:60], 50, 0, wire.ErrTooLarge},                      // more than max bytes, no end
		{head[:49], 50, 0, wire.ErrIncomplete},                    // fewer than max bytes, no end
		{strings.Repeat("a", 100), 100, 0, wire.ErrTooLarge},      // no line end at all
		{strings.Repeat("a", 99), 100, 0, wire.ErrIncomplete},     //
		{strings.Repeat("\r\n", 60), 100, 0, wire.ErrTooLarge},
	} {
		n, err := wire.ParseRequest([]byte(tc.b), tc.max, &r)
		if n != tc.n || !errors.Is(err, tc.err) {
			t.Errorf("len %d max %d: n %d err %v, want %d %v", len(tc.b), tc.max, n, err, tc.n, tc.err)
		}
	}
}

// ---- ParseResponse ----

func TestParseResponse(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A:  b \r\n\r\n"
	r := wire.Response{Chunked: true, Close: true, Fields: []wire.Field{{"Old", "x"}}, Conn: []string{"old"}}
	n, err := wire.ParseResponse([]byte(head+"helloHTTP/1.1 200 OK\r\n"), maxHead, &r)
	if err != nil || n != len(head) {
		t.Fatalf("n %d err %v, want %d", n, err, len(head))
	}
	want := []wire.Field{{"Content-Type", "text/plain"}, {"Content-Length", "5"}, {"X-A", "b"}}
	if r.Status != 200 || r.Minor != 1 || r.ContentLength != 5 || r.Chunked || r.Close || len(r.Conn) != 0 ||
		!reflect.DeepEqual(r.Fields, want) {
		t.Fatalf("got %+v", r)
	}
}

type respWant struct {
	status, minor int
	cl            int64
	chunked       bool
	close         bool
}

func TestParseResponseTable(t *testing.T) {
	for _, tc := range []struct {
		head string
		want respWant
	}{
		{"HTTP/1.1 204\r\n\r\n", respWant{204, 1, 0, false, false}},
		{"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", respWant{200, 1, 0, false, false}},
		{"HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n\r\n", respWant{404, 1, 12, false, false}},
		{"HTTP/1.1 599 x y z\r\n\r\n", respWant{599, 1, -1, false, false}},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", respWant{200, 1, -1, true, false}},
		{"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n", respWant{200, 1, -1, true, false}},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", respWant{200, 1, -1, true, false}},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n", respWant{200, 1, -1, true, false}},
		{"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", respWant{200, 1, 7, false, false}},
		{"HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length:7 \r\n\r\n", respWant{200, 1, 7, false, false}},
		{"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", respWant{200, 0, 1, false, true}},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", respWant{200, 0, 1, false, false}},
		{"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n", respWant{200, 0, -1, false, false}},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n\r\n", respWant{200, 0, -1, false, true}},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", respWant{200, 1, 1, false, true}},
		{"HTTP/1.1 200 OK\r\nConnection: x, CLOSE\r\n\r\n", respWant{200, 1, -1, false, true}},
		{"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", respWant{200, 1, -1, false, false}},
	} {
		var r wire.Response
		n, err := wire.ParseResponse([]byte(tc.head+"body"), maxHead, &r)
		if err != nil || n != len(tc.head) {
			t.Errorf("%q: n %d err %v, want %d", tc.head, n, err, len(tc.head))
			continue
		}
		got := respWant{r.Status, r.Minor, r.ContentLength, r.Chunked, r.Close}
		if got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.head, got, tc.want)
		}
	}
}

func TestParseResponseErrors(t *testing.T) {
	for _, tc := range []struct {
		head string
		err  error
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", wire.ErrContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", wire.ErrContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", wire.ErrContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wire.ErrContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", wire.ErrContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n", wire.ErrContentLength},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", wire.ErrTransferEncoding},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", wire.ErrTransferEncoding},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", wire.ErrTransferEncoding},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", wire.ErrTransferEncoding},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", wire.ErrTransferEncoding},
		{"HTTP/2 200\r\n\r\n", wire.ErrMalformed},
		{"HTTP/2.0 200 OK\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 20\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 099 x\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 000\r\n\r\n", wire.ErrMalformed},
		{"FOO\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.2 200 OK\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 2000 OK\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 20x OK\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1  200 OK\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 200\tOK\r\n\r\n", wire.ErrMalformed},
		{"http/1.1 200 OK\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 200 OK\r\nX-A\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 200 OK\r\n: a\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", wire.ErrMalformed},
		{"HTTP/1.1 200 OK\nContent-Length: 0\n\n", wire.ErrMalformed},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", wire.ErrMalformed},
		{"\r\nHTTP/1.1 200 OK\r\n\r\n", wire.ErrMalformed},
	} {
		var r wire.Response
		n, err := wire.ParseResponse([]byte(tc.head), maxHead, &r)
		if n != 0 || !errors.Is(err, tc.err) {
			t.Errorf("%q: n %d err %v, want %v", tc.head, n, err, tc.err)
		}
	}
}

func TestParseResponseIncompleteTooLarge(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	var r wire.Response
	for i := 0; i < len(head); i++ {
		if n, err := wire.ParseResponse([]byte(head[:i]), maxHead, &r); n != 0 || !errors.Is(err, wire.ErrIncomplete) {
			t.Errorf("%q: n %d err %v, want ErrIncomplete", head[:i], n, err)
		}
	}
	if n, err := wire.ParseResponse([]byte(head), len(head), &r); n != len(head) || err != nil {
		t.Errorf("max = len: n %d err %v", n, err)
	}
	if n, err := wire.ParseResponse([]byte(head), len(head)-1, &r); n != 0 || !errors.Is(err, wire.ErrTooLarge) {
		t.Errorf("max = len-1: n %d err %v, want ErrTooLarge", n, err)
	}
	if n, err := wire.ParseResponse([]byte(head[:20]), 20, &r); n != 0 || !errors.Is(err, wire.ErrTooLarge) {
		t.Errorf("max bytes without end: n %d err %v, want ErrTooLarge", n, err)
	}
}

// A response to which RFC 9112 section 6.3 gives no body (1xx, 204, 304)
// ends at its head, whatever Content-Length says; without Content-Length its
// length is not "unknown, until close" either. net/http's ReadResponse reports
// ContentLength 0 for all of these.
func TestParseResponseNoBodyStatus(t *testing.T) {
	for _, head := range []string{
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
	} {
		var r wire.Response
		n, err := wire.ParseResponse([]byte(head), maxHead, &r)
		if err != nil || n != len(head) {
			t.Errorf("%q: n %d err %v", head, n, err)
			continue
		}
		if r.ContentLength != 0 || r.Chunked {
			t.Errorf("%q: ContentLength %d Chunked %v, want a body of length 0", head, r.ContentLength, r.Chunked)
		}
	}
}

// RFC 9112 section 6.1: a recipient of an HTTP/1.0 message with
// Transfer-Encoding must treat the framing as faulty and close the connection
// after the message.
func TestParseResponseHTTP10TransferEncoding(t *testing.T) {
	head := "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
	var r wire.Response
	n, err := wire.ParseResponse([]byte(head), maxHead, &r)
	if err == nil && !r.Close {
		t.Errorf("%q: n %d, Chunked %v, Close false: the connection is kept for reuse", head, n, r.Chunked)
	}
}

// ---- Chunked ----

func feedAll(p []byte) (int, bool, error) {
	var c wire.Chunked
	return c.Feed(p)
}

func TestChunkedFeed(t *testing.T) {
	for _, body := range []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
		"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
		"005\r\nhello\r\n000\r\n\r\n",
		"0000000000000005\r\nhello\r\n0\r\n\r\n",                    // 16 digits
		"5;name=value;x=\"q s\"\r\nhello\r\n0;last\r\n\r\n",         // extensions
		"5 ; a = b\r\nhello\r\n0\t;c\r\n\r\n",                       // BWS
		"5;" + strings.Repeat("e", 4000) + "\r\nhello\r\n0\r\n\r\n", // long extension
		"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n",                 // trailers
		"0\r\nX: " + strings.Repeat("t", 4000) + "\r\n\r\n",         // long trailer
		"1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n",                           // CR and LF as data
		"10\r\n0123456789abcdef\r\n0\r\n\r\n",                       //
	} {
		const extra = "HTTP/1.1 200 OK\r\n\r\n"
		n, done, err := feedAll([]byte(body + extra))
		if n != len(body) || !done || err != nil {
			t.Errorf("%.40q: n %d done %v err %v, want %d true nil", body, n, done, err, len(body))
			continue
		}
		// One byte at a time.
		var c wire.Chunked
		total := 0
		for i := 0; i < len(body); i++ {
			n, done, err := c.Feed([]byte{body[i]})
			if n != 1 || err != nil || done != (i == len(body)-1) {
				t.Fatalf("%.40q byte %d: n %d done %v err %v", body, i, n, done, err)
			}
			total += n
		}
		if total != len(body) {
			t.Fatalf("total %d", total)
		}
		// Once done, nothing more belongs to the body.
		if n, done, err := c.Feed([]byte(extra)); n != 0 || !done || err != nil {
			t.Errorf("after done: n %d done %v err %v", n, done, err)
		}
		if n, done, err := c.Feed(nil); n != 0 || !done || err != nil {
			t.Errorf("after done, empty: n %d done %v err %v", n, done, err)
		}
	}
}

func TestChunkedIncomplete(t *testing.T) {
	body := "5;x=y\r\nhello\r\n0\r\nX: 1\r\n\r\n"
	for i := 0; i < len(body); i++ {
		n, done, err := feedAll([]byte(body[:i]))
		if n != i || done || err != nil {
			t.Errorf("%q: n %d done %v err %v, want %d false nil", body[:i], n, done, err, i)
		}
	}
	var c wire.Chunked
	if n, done, err := c.Feed(nil); n != 0 || done || err != nil {
		t.Errorf("empty: n %d done %v err %v", n, done, err)
	}
}

func TestChunkedErrors(t *testing.T) {
	for _, tc := range []struct {
		body string
		at   int // n returned: the bytes before the offending one
	}{
		{"g\r\n", 0},
		{"\r\n", 0},
		{";x\r\n", 0},
		{" 5\r\n", 0},
		{"-5\r\n", 0},
		{"0x5\r\n", 1},
		{"5\nhello\r\n", 1},
		{"5\rhello\r\n", 2},
		{"5;a\nhello\r\n", 3},
		{"5\r\nhelloX\r\n0\r\n\r\n", 8},
		{"5\r\nhello\n0\r\n\r\n", 8},
		{"5\r\nhello\rX0\r\n\r\n", 9},
		{"5\r\nhello\r\n\r\n", 10},
		{"00000000000000005\r\nhello\r\n0\r\n\r\n", 16},
		{"FFFFFFFFFFFFFFFFF\r\n", 16},
		{"5;" + strings.Repeat("e", 5000) + "\r\nhello\r\n0\r\n\r\n", 4098},
		{"0\r\nX: 1\n\r\n", 7},
		{"0\r\nX: 1\rY\r\n\r\n", 8},
		{"0\r\n\n", 3},
		{"0\r\n\rX", 4},
		{"0\r\nX: " + strings.Repeat("t", 5000) + "\r\n\r\n", 4099},
		// RFC 9112 7.1.1: after the size only BWS ";" may follow; net/http
		// refuses these too. -1: any position.
		{"5 x\r\nhello\r\n0\r\n\r\n", -1},
		{"0 0\r\n\r\n", -1},
		{"5\tfoo=bar\r\nhello\r\n0\r\n\r\n", -1},
	} {
		n, done, err := feedAll([]byte(tc.body))
		if err == nil || done || (tc.at >= 0 && n != tc.at) {
			t.Errorf("%.40q: n %d done %v err %v, want %d false error", tc.body, n, done, err, tc.at)
		}
		// Fed byte by byte, it fails at the same byte.
		var c wire.Chunked
		for i := 0; i < len(tc.body); i++ {
			m, done, err := c.Feed([]byte{tc.body[i]})
			if err != nil {
				if m != 0 || (tc.at >= 0 && i != tc.at) {
					t.Errorf("%.40q byte by byte: error at %d (n %d), want at %d", tc.body, i, m, tc.at)
				}
				break
			}
			if done {
				t.Errorf("%.40q byte by byte: done", tc.body)
				break
			}
		}
	}
}

// ---- HasToken, EqualFold ----

func TestHasToken(t *testing.T) {
	for _, tc := range []struct {
		values []string
		token  string
		want   bool
	}{
		{nil, "close", false},
		{[]string{""}, "close", false},
		{[]string{"close"}, "close", true},
		{[]string{"Close"}, "cLOSE", true},
		{[]string{"keep-alive, Upgrade"}, "upgrade", true},
		{[]string{"keep-alive", " \tX-Hop\t "}, "x-hop", true},
		{[]string{" , ,close ,"}, "close", true},
		{[]string{"a,b", "c"}, "c", true},
		{[]string{"clos"}, "close", false},
		{[]string{"closed"}, "close", false},
		{[]string{"x-close"}, "close", false},
		{[]string{"close x"}, "close", false},
		{[]string{"a;close"}, "close", false},
	} {
		if got := wire.HasToken(tc.values, tc.token); got != tc.want {
			t.Errorf("HasToken(%q, %q) = %v, want %v", tc.values, tc.token, got, tc.want)
		}
	}
}

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"", "", true},
		{"Content-Length", "content-length", true},
		{"HOST", "host", true},
		{"x-Y-z", "X-y-Z", true},
		{"a", "ab", false},
		{"ab", "a", false},
		{"host", "hosts", false},
		{"host", "hast", false},
		{"[", "{", false},               // differ by 0x20 but are not letters
		{"@", "`", false},               //
		{"\xc3\xa9", "\xc3\x89", false}, // é, É: ASCII only
		{"K", "\u212a", false},
		{"1", "1", true},
	} {
		if got := wire.EqualFold(tc.a, tc.b); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// ---- allocations ----

const browserGET = "GET /app/assets/main.css?v=42 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/css,*/*;q=0.1\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://www.example.com/app/\r\n" +
	"Cookie: session=0123456789abcdef; theme=dark\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n"

const typicalResponse = "HTTP/1.1 200 OK\r\n" +
	"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n" +
	"Server: instance\r\n" +
	"Content-Type: text/css; charset=utf-8\r\n" +
	"Content-Length: 1234\r\n" +
	"Cache-Control: max-age=3600\r\n" +
	"ETag: \"abc123\"\r\n" +
	"Vary: Accept-Encoding\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n"

func TestParseRequestAllocs(t *testing.T) {
	b := []byte(browserGET)
	var r wire.Request
	var n int
	var err error
	allocs := testing.AllocsPerRun(100, func() { n, err = wire.ParseRequest(b, maxHead, &r) })
	if err != nil || n != len(b) || r.Unusual != "" || len(r.Fields) != 8 {
		t.Fatalf("n %d err %v Unusual %q fields %d", n, err, r.Unusual, len(r.Fields))
	}
	if allocs != 0 {
		t.Errorf("ParseRequest: %v allocations per run, want 0", allocs)
	}
}

func TestParseResponseAllocs(t *testing.T) {
	b := []byte(typicalResponse)
	var r wire.Response
	var n int
	var err error
	allocs := testing.AllocsPerRun(100, func() { n, err = wire.ParseResponse(b, maxHead, &r) })
	if err != nil || n != len(b) || r.ContentLength != 1234 || len(r.Fields) != 8 {
		t.Fatalf("n %d err %v %+v", n, err, r)
	}
	if allocs != 0 {
		t.Errorf("ParseResponse: %v allocations per run, want 0", allocs)
	}
}

func TestChunkedAllocs(t *testing.T) {
	b := []byte("5;x=y\r\nhello\r\n0\r\nX: 1\r\n\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		var c wire.Chunked
		c.Feed(b)
	})
	if allocs != 0 {
		t.Errorf("Chunked.Feed: %v allocations per run, want 0", allocs)
	}
}
