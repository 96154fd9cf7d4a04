package wire_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/slugway/slugway/proxy/wire"
)

const fuzzMax = 4096

// fieldMap groups fields the way net/textproto does: canonical names, values in order.
func fieldMap(fields []wire.Field) map[string][]string {
	m := map[string][]string{}
	for _, f := range fields {
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		m[k] = append(m[k], f.Value)
	}
	return m
}

// checkHeadLength checks what holds for any head parse: the head ends with a
// line feed, the verdict does not depend on the bytes after it, and max is
// honoured exactly.
func checkHeadLength(t *testing.T, data []byte, n int, parse func([]byte, int) (int, error)) {
	t.Helper()
	if n < 2 || n > len(data) || data[n-1] != '\n' {
		t.Fatalf("head length %d of %d bytes, ending %q", n, len(data), data[:min(n, len(data))])
	}
	if n2, err := parse(data[:n], fuzzMax); n2 != n || err != nil {
		t.Fatalf("head alone: n %d err %v, want %d", n2, err, n)
	}
	if n2, err := parse(data, n); n2 != n || err != nil {
		t.Fatalf("max = head length: n %d err %v, want %d", n2, err, n)
	}
	if n2, err := parse(data, n-1); n2 != 0 || !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("max = head length - 1: n %d err %v, want ErrTooLarge", n2, err)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		browserGET + "GET /next HTTP/1.1\r\n",
		"POST /x?y=1 HTTP/1.1\r\nHost: a:80\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
		"put /%41 HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nX: \t\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r wire.Request
		n, err := wire.ParseRequest(data, fuzzMax, &r)
		if err != nil {
			if n != 0 || (!errors.Is(err, wire.ErrIncomplete) && !errors.Is(err, wire.ErrTooLarge)) {
				t.Fatalf("n %d err %v", n, err)
			}
			return
		}
		checkHeadLength(t, data, n, func(b []byte, max int) (int, error) {
			var r2 wire.Request
			n, err := wire.ParseRequest(b, max, &r2)
			if err == nil && (r2.Unusual != r.Unusual || r2.Reject != r.Reject) {
				t.Fatalf("verdict changed: %q, then %q", r.Unusual, r2.Unusual)
			}
			return n, err
		})
		head := data[:n]
		if r.Reject != nil {
			if r.Unusual != r.Reject.Reason {
				t.Fatalf("Reject %v with Unusual %q", r.Reject, r.Unusual)
			}
			return
		}
		checkUnambiguous(t, head)
		if r.Unusual != "" {
			return
		}

		// Plain: CRLF line endings only, ending in the blank line.
		if !bytes.HasSuffix(head, []byte("\r\n\r\n")) || bytes.Count(head, []byte("\n")) != bytes.Count(head, []byte("\r\n")) {
			t.Fatalf("plain head %q has bare LFs", head)
		}

		br := bufio.NewReader(bytes.NewReader(head))
		std, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("plain for wire, net/http rejects %q: %v", head, err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("net/http's head ended %d bytes earlier", br.Buffered())
		}
		// What net/http's server checks beyond ReadRequest (it answers 400).
		if !httpguts.ValidHostHeader(std.Host) {
			t.Fatalf("plain for wire, net/http's server rejects the Host %q", std.Host)
		}
		if std.ProtoMajor != 1 || std.ProtoMinor != 1 || std.URL.Host != "" || std.URL.Scheme != "" {
			t.Fatalf("plain but %s, URL %#v", std.Proto, std.URL)
		}
		if std.Method != r.Method || std.RequestURI != r.Target || std.Host != r.Host {
			t.Fatalf("Method %q Target %q Host %q; net/http: %q %q %q",
				r.Method, r.Target, r.Host, std.Method, std.RequestURI, std.Host)
		}
		if r.ContentLength == -1 {
			if std.ContentLength != 0 || std.Header["Content-Length"] != nil {
				t.Fatalf("no Content-Length, net/http: %d %q", std.ContentLength, std.Header["Content-Length"])
			}
		} else if std.ContentLength != r.ContentLength {
			t.Fatalf("ContentLength %d, net/http %d", r.ContentLength, std.ContentLength)
		}
		if std.Close != r.Close {
			t.Fatalf("Close %v, net/http %v", r.Close, std.Close)
		}
		if !reflect.DeepEqual(r.Conn, []string(std.Header["Connection"])) && !(len(r.Conn) == 0 && std.Header["Connection"] == nil) {
			t.Fatalf("Conn %q, net/http %q", r.Conn, std.Header["Connection"])
		}
		if std.TransferEncoding != nil || std.Trailer != nil {
			t.Fatalf("plain, but net/http: TransferEncoding %q Trailer %q", std.TransferEncoding, std.Trailer)
		}
		for _, k := range []string{"Transfer-Encoding", "Upgrade", "Expect", "Trailer"} {
			if _, ok := std.Header[k]; ok {
				t.Fatalf("plain with %s: %q", k, std.Header[k])
			}
		}
		if httpguts.HeaderValuesContainsToken(std.Header["Connection"], "upgrade") {
			t.Fatalf("plain with Connection: upgrade")
		}
		// The fields are the ones net/http sees.
		ours := fieldMap(r.Fields)
		delete(ours, "Host") // ReadRequest moves it to std.Host
		got := map[string][]string(std.Header)
		if _, ok := ours["Cache-Control"]; !ok && ours["Pragma"] != nil {
			delete(got, "Cache-Control") // net/http adds it for Pragma: no-cache
		}
		if !reflect.DeepEqual(ours, got) {
			t.Fatalf("fields %q, net/http %q", ours, got)
		}
	})
}

// checkUnambiguous checks, by other means than the parser, that a head it did
// not refuse has none of what makes framing ambiguous: NUL, CR without LF, LF
// without CR (after the leading blank lines), obs-fold, more than one
// Content-Length, Content-Length with Transfer-Encoding.
func checkUnambiguous(t *testing.T, head []byte) {
	t.Helper()
	if bytes.IndexByte(head, 0) >= 0 {
		t.Fatalf("not refused, with a NUL: %q", head)
	}
	body := bytes.TrimLeft(head, "\r\n")
	if bytes.Count(body, []byte("\r")) != bytes.Count(body, []byte("\r\n")) || bytes.Count(body, []byte("\n")) != bytes.Count(body, []byte("\r\n")) {
		t.Fatalf("not refused, with a bare CR or LF: %q", head)
	}
	cl, te := 0, false
	for i, l := range strings.Split(string(body), "\r\n") {
		if i == 0 || l == "" {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			t.Fatalf("not refused, with obs-fold: %q", head)
		}
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(name) {
		case "content-length":
			cl++
		case "transfer-encoding":
			te = true
		}
	}
	if cl > 1 || cl > 0 && te {
		t.Fatalf("not refused: %d Content-Length, Transfer-Encoding %v: %q", cl, te, head)
	}
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		typicalResponse + "body",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 204\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nTrailer: X-Sum\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.0 404 Not Found\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r wire.Response
		n, err := wire.ParseResponse(data, fuzzMax, &r)
		if err != nil {
			if n != 0 {
				t.Fatalf("n %d err %v", n, err)
			}
			for _, e := range []error{wire.ErrIncomplete, wire.ErrTooLarge, wire.ErrMalformed, wire.ErrContentLength, wire.ErrTransferEncoding} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unexpected error %v", err)
		}
		checkHeadLength(t, data, n, func(b []byte, max int) (int, error) {
			var r2 wire.Response
			return wire.ParseResponse(b, max, &r2)
		})
		head := data[:n]
		if !bytes.HasSuffix(head, []byte("\r\n\r\n")) || bytes.Count(head, []byte("\n")) != bytes.Count(head, []byte("\r\n")) {
			t.Fatalf("accepted head %q has bare LFs", head)
		}
		if r.Status < 100 || r.Status > 999 || (r.Minor != 0 && r.Minor != 1) {
			t.Fatalf("Status %d Minor %d", r.Status, r.Minor)
		}
		if r.Chunked != (r.ContentLength == -1 && r.Chunked) {
			t.Fatalf("Chunked with ContentLength %d", r.ContentLength)
		}
		if wire.NoBody(r.Status) && (r.ContentLength != 0 || r.Chunked) {
			t.Fatalf("status %d with ContentLength %d Chunked %v", r.Status, r.ContentLength, r.Chunked)
		}
		if bytes.IndexByte(head, 0) >= 0 || strings.ContainsAny(r.Reason, "\r\n\x00") {
			t.Fatalf("accepted a head with control bytes: %q (reason %q)", head, r.Reason)
		}

		br := bufio.NewReader(bytes.NewReader(head))
		std, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			if stdStricterResponse(r, err) {
				return
			}
			t.Fatalf("accepted by wire, net/http rejects %q: %v", head, err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("net/http's head ended %d bytes earlier", br.Buffered())
		}
		if std.StatusCode != r.Status || std.ProtoMinor != r.Minor {
			t.Fatalf("Status %d Minor %d, net/http %d %d", r.Status, r.Minor, std.StatusCode, std.ProtoMinor)
		}
		// net/http ignores Transfer-Encoding in HTTP/1.0 (wire does not; see
		// TestParseResponseHTTP10TransferEncoding), and gives 1xx, 204 and 304
		// no body (see TestParseResponseNoBodyStatus): those are tested there.
		noBody := r.Status/100 == 1 || r.Status == 204 || r.Status == 304
		if r.Minor == 0 && r.Chunked || noBody {
			return
		}
		if r.Chunked {
			if !reflect.DeepEqual(std.TransferEncoding, []string{"chunked"}) {
				t.Fatalf("Chunked, net/http TransferEncoding %q", std.TransferEncoding)
			}
		} else if std.TransferEncoding != nil || std.ContentLength != r.ContentLength {
			t.Fatalf("ContentLength %d, net/http %d (TransferEncoding %q)", r.ContentLength, std.ContentLength, std.TransferEncoding)
		}
		// net/http also closes after a body delimited by the close.
		unbounded := r.ContentLength == -1 && !r.Chunked
		if r.Close && !std.Close || std.Close && !r.Close && !unbounded {
			t.Fatalf("Close %v, net/http %v", r.Close, std.Close)
		}
		ours, got := fieldMap(r.Fields), map[string][]string(std.Header)
		for _, k := range []string{"Transfer-Encoding", "Content-Length", "Connection", "Trailer", "Cache-Control"} {
			delete(ours, k) // net/http rewrites these
			delete(got, k)
		}
		if !reflect.DeepEqual(ours, got) {
			t.Fatalf("fields %q, net/http %q", ours, got)
		}
	})
}

// stdStricterResponse reports whether net/http rejected a response head for a
// reason where it is stricter than RFC 9110/9112 require (so wire accepting it
// is not a bug).
func stdStricterResponse(r wire.Response, err error) bool {
	msg := err.Error()
	// Content-Length: 5 and Content-Length: 05 are the same decimal value,
	// which RFC 9110 section 8.6 lets a recipient accept as one.
	if strings.Contains(msg, "multiple Content-Length") {
		return true
	}
	// net/http refuses a chunked response whose advisory Trailer field names
	// Content-Length, Transfer-Encoding or Trailer.
	if r.Chunked && strings.Contains(msg, "bad trailer key") {
		return true
	}
	return false
}

func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",
		"5;name=value;x=\"q s\"\r\nhello\r\n0;last\r\n\r\n",
		"5 ; a = b\r\nhello\r\n0\r\n\r\n",
		"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n",
		"A\r\n0123456789\r\n0000000000000000\r\n\r\n",
		"00000000000000005\r\nhello\r\n0\r\n\r\n",
		"5\r\nhelloX\r\n0\r\n\r\n",
		"5\nhello\n0\n\n",
	} {
		f.Add([]byte(s), []byte{1, 3, 0, 7})
	}
	f.Fuzz(func(t *testing.T, data, splits []byte) {
		var c wire.Chunked
		n, done, err := c.Feed(data)
		if n < 0 || n > len(data) {
			t.Fatalf("n %d of %d", n, len(data))
		}
		if done && err != nil {
			t.Fatalf("done with error %v", err)
		}
		if !done && err == nil && n != len(data) {
			t.Fatalf("not done, no error, but consumed %d of %d", n, len(data))
		}
		if done {
			if m, d, e := c.Feed(data[n:]); m != 0 || !d || e != nil {
				t.Fatalf("after done: %d %v %v", m, d, e)
			}
		}

		// The same bytes in pieces.
		var c2 wire.Chunked
		total, done2, failed2 := 0, false, false
		if allZero(splits) {
			splits = nil // pieces of one byte
		}
		rest := data
		for i := 0; len(rest) > 0; i++ {
			size := 1
			if len(splits) > 0 {
				size = int(splits[i%len(splits)])
			}
			piece := rest[:min(size, len(rest))]
			m, d, e := c2.Feed(piece)
			if m < 0 || m > len(piece) || (d && e != nil) {
				t.Fatalf("piece %q: %d %v %v", piece, m, d, e)
			}
			total += m
			if e != nil {
				failed2 = true
				break
			}
			if d {
				done2 = true
				break
			}
			if m != len(piece) {
				t.Fatalf("piece %q: consumed %d without being done", piece, m)
			}
			rest = rest[len(piece):]
		}
		if total != n || done2 != done || failed2 != (err != nil) {
			t.Fatalf("whole: %d %v %v; in pieces %v: %d %v failed %v", n, done, err, splits, total, done2, failed2)
		}

		if !done {
			return
		}
		// net/http decodes the same body (it stops at the last chunk; the
		// trailer section is read by its caller).
		body := data[:n]
		want, lines := walkChunks(t, body)
		got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(body)))
		if err != nil {
			if stdStricterChunked(err, lines) {
				return
			}
			t.Fatalf("accepted by wire, net/http rejects %q: %v", body, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("net/http decodes %q, want %q", got, want)
		}
	})
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// walkChunks decodes a complete chunked body that Chunked accepted, returning
// the data and the chunk-size lines (without CRLF).
func walkChunks(t *testing.T, body []byte) (data []byte, lines [][]byte) {
	t.Helper()
	for {
		i := bytes.Index(body, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("no size line in %q", body)
		}
		line := body[:i]
		lines = append(lines, line)
		body = body[i+2:]
		var size uint64
		for _, c := range line {
			v := strings.IndexByte("0123456789abcdef", c|0x20)
			if v < 0 || c == ' ' {
				break
			}
			size = size<<4 | uint64(v)
		}
		if size == 0 {
			return data, lines
		}
		if uint64(len(body)) < size+2 {
			t.Fatalf("short chunk in %q", body)
		}
		data = append(data, body[:size]...)
		body = body[size+2:]
	}
}

// stdStricterChunked reports whether net/http's chunked reader rejected a body
// for a reason where it is stricter than RFC 9112 section 7.1.
func stdStricterChunked(err error, lines [][]byte) bool {
	msg := err.Error()
	// net/http caps chunk-size lines (extensions included) at 4096 bytes and
	// the ratio of framing to data; wire allows 4096 bytes of extensions per
	// line and does not limit the ratio.
	if strings.Contains(msg, "line too long") || strings.Contains(msg, "too much non-data") {
		return true
	}
	// net/http does not allow the BWS that RFC 9112 allows before ";" of a
	// chunk extension ("5 ;x"). Only that: "5 x" is not valid either way.
	if strings.Contains(msg, "invalid byte in chunk length") {
		for _, l := range lines {
			i := 0
			for i < len(l) && l[i] != ' ' && l[i] != '\t' && l[i] != ';' {
				i++
			}
			j := i
			for j < len(l) && (l[j] == ' ' || l[j] == '\t') {
				j++
			}
			if j < len(l) && l[j] != ';' {
				return false // "5 x": not a chunk extension at all
			}
		}
		return true
	}
	return false
}
