package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/slugway/slugway/proxy/wire"
)

// Heads whose framing is ambiguous, or whose syntax lets two parsers read
// different messages from the same bytes, are refused with a typed error
// (answered with its status, then the connection closes), whichever server
// would otherwise have taken them.
func TestParseRequestReject(t *testing.T) {
	const h = "Host: a\r\n"
	for _, tc := range []struct {
		name, head string
		want       *wire.RequestError
	}{
		{"CL then TE", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", wire.ErrCLAndTE},
		{"TE then CL", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n", wire.ErrCLAndTE},
		{"TE then cl lower", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: Chunked\r\ncontent-length: 0\r\n\r\n", wire.ErrCLAndTE},
		{"two different Content-Lengths", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", wire.ErrRepeatedLength},
		{"two equal Content-Lengths", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\ncontent-length: 1\r\n\r\n", wire.ErrRepeatedLength},
		{"Content-Length list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1, 1\r\n\r\n", wire.ErrBadLength},
		{"Content-Length +1", "POST / HTTP/1.1\r\n" + h + "Content-Length: +1\r\n\r\n", wire.ErrBadLength},
		{"Content-Length -1", "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n", wire.ErrBadLength},
		{"Content-Length empty", "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n", wire.ErrBadLength},
		{"Content-Length 19 digits", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1234567890123456789\r\n\r\n", wire.ErrBadLength},
		{"chunked then identity", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, identity\r\n\r\n", wire.ErrChunkedNotFinal},
		{"gzip only", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n", wire.ErrChunkedNotFinal},
		{"xchunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n", wire.ErrChunkedNotFinal},
		{"chunked twice in a list", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, chunked\r\n\r\n", wire.ErrChunkedNotFinal},
		{"chunked in two fields", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", wire.ErrChunkedNotFinal},
		{"gzip then chunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n", wire.ErrTransferCoding},
		{"empty TE", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n\r\n", wire.ErrTransferCoding},
		{"TE comma only", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: ,\r\n\r\n", wire.ErrTransferCoding},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n", wire.ErrTransferEncoding10},
		{"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n b\r\n\r\n", wire.ErrObsFold},
		{"obs-fold tab", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n\tb\r\n\r\n", wire.ErrObsFold},
		{"first field folded", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", wire.ErrObsFold},
		{"folded Transfer-Encoding", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n chunked\r\n\r\n", wire.ErrTransferCoding},
		{"bare CR in a value", "GET / HTTP/1.1\r\n" + h + "X-A: a\rb\r\n\r\n", wire.ErrBareCR},
		{"bare CR ending a name", "GET / HTTP/1.1\r\n" + h + "X-A\r: b\r\n\r\n", wire.ErrBareCR},
		{"CR CR LF", "GET / HTTP/1.1\r\n" + h + "X: a\r\r\n\r\n", wire.ErrBareCR},
		{"bare CR in the target", "GET /a\rb HTTP/1.1\r\n" + h + "\r\n", wire.ErrBareCR},
		{"bare CR after the version", "GET / HTTP/1.1\r\r\n" + h + "\r\n", wire.ErrBareCR},
		{"bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n", wire.ErrBareLF},
		{"bare LF on the request line", "GET / HTTP/1.1\n" + h + "\r\n", wire.ErrBareLF},
		{"bare LF on a field", "GET / HTTP/1.1\r\nHost: a\n\r\n", wire.ErrBareLF},
		{"bare LF ending the head", "GET / HTTP/1.1\r\n" + h + "\n", wire.ErrBareLF},
		{"bare LF hiding a second request", "GET / HTTP/1.1\r\n" + h + "X: a\nGET /admin HTTP/1.1\r\n\r\n", wire.ErrBareLF},
		{"leading bare LF", "\nGET / HTTP/1.1\r\n" + h + "\r\n", wire.ErrBareLF},
		{"NUL in a value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x00b\r\n\r\n", wire.ErrNUL},
		{"NUL in a name", "GET / HTTP/1.1\r\n" + h + "X\x00A: b\r\n\r\n", wire.ErrNUL},
		{"NUL in the target", "GET /a\x00 HTTP/1.1\r\n" + h + "\r\n", wire.ErrNUL},
		{"control byte in a value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x01b\r\n\r\n", wire.ErrControl},
		{"DEL in a value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x7fb\r\n\r\n", wire.ErrControl},
		{"control byte in Host", "GET / HTTP/1.1\r\nHost: a\x1b\r\n\r\n", wire.ErrControl},
		{"space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", wire.ErrFieldName},
		{"space before the colon of TE", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding : chunked\r\n\r\n", wire.ErrFieldName},
		{"space in a name", "GET / HTTP/1.1\r\n" + h + "X A: a\r\n\r\n", wire.ErrFieldName},
		{"no colon", "GET / HTTP/1.1\r\n" + h + "X-A\r\n\r\n", wire.ErrFieldName},
		{"empty name", "GET / HTTP/1.1\r\n" + h + ": a\r\n\r\n", wire.ErrFieldName},
		// A refusal later in the head wins over an earlier reason to hand it on.
		{"upgrade, then CL and TE", "POST / HTTP/1.1\r\n" + h + "Upgrade: h2c\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", wire.ErrCLAndTE},
		{"absolute form, then obs-fold", "GET http://a/ HTTP/1.1\r\n" + h + "X: a\r\n b\r\n\r\n", wire.ErrObsFold},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r wire.Request
			n, err := wire.ParseRequest([]byte(tc.head+"XYZ"), maxHead, &r)
			if err != nil || n != len(tc.head) {
				t.Fatalf("n %d err %v, want %d", n, err, len(tc.head))
			}
			if r.Reject != tc.want {
				t.Fatalf("Reject %v, want %v", r.Reject, tc.want)
			}
			if r.Unusual != tc.want.Reason {
				t.Fatalf("Unusual %q, want the reason %q (the request must not be served as plain)", r.Unusual, tc.want.Reason)
			}
			var e *wire.RequestError
			if !errors.As(error(r.Reject), &e) || (e.Status != 400 && e.Status != 501) {
				t.Fatalf("Reject %#v", r.Reject)
			}
		})
	}
}

// Valid requests that only go to a full server are not refused.
func TestParseRequestNotRejected(t *testing.T) {
	const h = "Host: a\r\n"
	for _, head := range []string{
		"POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: Chunked \r\n\r\n",
		"GET / HTTP/1.0\r\n" + h + "\r\n",
		"\r\nGET / HTTP/1.1\r\n" + h + "\r\n",
		"GET / HTTP/1.1\r\n" + h + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET / HTTP/1.1\r\n" + h + "X-A: caf\xc3\xa9\t\r\n\r\n", // obs-text and HTAB are allowed
		"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
	} {
		var r wire.Request
		n, err := wire.ParseRequest([]byte(head), maxHead, &r)
		if err != nil || n != len(head) || r.Reject != nil {
			t.Errorf("%q: n %d err %v Reject %v", head, n, err, r.Reject)
		}
	}
}

func TestRequestErrorsListed(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range wire.RequestErrors() {
		if seen[e.Reason] || !strings.Contains(e.Error(), e.Reason) {
			t.Errorf("%v: duplicate reason or Error() without it", e)
		}
		seen[e.Reason] = true
	}
	if len(seen) < 12 {
		t.Errorf("%d request errors", len(seen))
	}
}

// Control bytes in the status line (the reason phrase) of a response are
// refused like those in field values: relayed, a bare CR could end the line
// early for the client.
func TestParseResponseReason(t *testing.T) {
	for _, tc := range []struct {
		line, reason string
		ok           bool
	}{
		{"HTTP/1.1 200 OK", "OK", true},
		{"HTTP/1.1 200 ", "", true},
		{"HTTP/1.1 200", "", true},
		{"HTTP/1.1 404 Not \tFound", "Not \tFound", true},
		{"HTTP/1.1 200 d\xc3\xa9j\xc3\xa0", "d\xc3\xa9j\xc3\xa0", true},
		{"HTTP/1.1 200 O\rK", "", false},
		{"HTTP/1.1 200 OK\r", "", false},
		{"HTTP/1.1 200 O\x00K", "", false},
		{"HTTP/1.1 200 O\x01K", "", false},
		{"HTTP/1.1 200 O\x7fK", "", false},
		{"HTTP/1.1 200 OK\rSet-Cookie: a=b", "", false},
	} {
		head := tc.line + "\r\nContent-Length: 0\r\n\r\n"
		var r wire.Response
		n, err := wire.ParseResponse([]byte(head), maxHead, &r)
		switch {
		case tc.ok && (err != nil || n != len(head) || r.Reason != tc.reason):
			t.Errorf("%q: n %d err %v reason %q, want %q", tc.line, n, err, r.Reason, tc.reason)
		case !tc.ok && !errors.Is(err, wire.ErrMalformed):
			t.Errorf("%q: err %v, want ErrMalformed", tc.line, err)
		}
	}
}

func TestNoBody(t *testing.T) {
	for status, want := range map[int]bool{100: true, 101: true, 103: true, 199: true, 200: false, 204: true, 205: false, 304: true, 404: false} {
		if got := wire.NoBody(status); got != want {
			t.Errorf("NoBody(%d) = %v", status, got)
		}
	}
}

// The limit on response heads is the caller's: a head of a megabyte is
// ErrTooLarge at any smaller limit, and is read whole only up to the limit.
func TestParseResponseHeadLimit(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Big: "+strings.Repeat("b", 1000)+"\r\n", 1024) + "\r\n"
	var r wire.Response
	for _, max := range []int{4 << 10, 64 << 10, len(head) - 1} {
		if n, err := wire.ParseResponse([]byte(head), max, &r); n != 0 || !errors.Is(err, wire.ErrTooLarge) {
			t.Errorf("max %d: n %d err %v, want ErrTooLarge", max, n, err)
		}
	}
	if n, err := wire.ParseResponse([]byte(head), len(head), &r); n != len(head) || err != nil {
		t.Errorf("max = len: n %d err %v", n, err)
	}
}
