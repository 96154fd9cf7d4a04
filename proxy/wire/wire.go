// Package wire parses HTTP/1.1 message heads and chunked bodies straight from
// the bytes read off a connection, for the proxy's fast HTTP/1.1 front end.
//
// It is deliberately narrow. A request head is either "plain" (one the fast
// path may forward: origin-form target, HTTP/1.1, exactly one Host, at most one
// valid Content-Length, no Transfer-Encoding, Upgrade, Expect or Trailer, every
// line ending in CRLF, no obs-fold) or it is not, and then the connection goes to
// net/http, which answers it exactly as it always did (including its 400s). So
// this parser never decides what is an error for a client; it only decides what
// is simple. Response heads come from instances: anything malformed is an error
// (the proxy answers 502).
//
// Parsed strings share the memory of the parsed buffer (no copies, no
// allocations): they are valid only until the caller reuses that buffer.
package wire

import (
	"bytes"
	"errors"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// Field is one header field as sent: the name in the sender's case, the value
// without surrounding whitespace.
type Field struct{ Name, Value string }

// Request is a parsed request head.
type Request struct {
	Method, Target, Host string
	// Fields are all header fields in order, Host included.
	Fields []Field
	// ContentLength is the body's length, or -1 without a Content-Length field.
	ContentLength int64
	// Close is true when the client sent "Connection: close".
	Close bool
	// Conn are the values of the Connection fields: the hop-by-hop field names
	// they list are not forwarded.
	Conn []string
	// Unusual says why the request is not plain ("" when it is plain), as one
	// of a fixed set of strings (it may label a metric).
	Unusual string
}

// Response is a parsed response head.
type Response struct {
	Status int
	// Minor is the HTTP/1.x minor version.
	Minor int
	// Fields are all header fields in order.
	Fields []Field
	// ContentLength is the body's length: 0 for 1xx, 204 and 304, whatever
	// their fields say; -1 when unknown (chunked, or until close). A response to
	// HEAD has no body either: the caller knows the method.
	ContentLength int64
	// Chunked is true for "Transfer-Encoding: chunked" (which overrides Content-Length).
	Chunked bool
	// Close is true when the instance will close the connection after this response.
	Close bool
	Conn  []string
}

// Errors.
var (
	// ErrIncomplete means the head has not ended yet: read more and parse again.
	ErrIncomplete = errors.New("incomplete message head")
	// ErrTooLarge means the head did not end within the limit.
	ErrTooLarge = errors.New("message head too large")
	// ErrMalformed is a response head that is not valid HTTP/1.x.
	ErrMalformed = errors.New("malformed response head")
	// ErrTransferEncoding is a response with a transfer coding other than chunked.
	ErrTransferEncoding = errors.New("unsupported transfer encoding in the response")
	// ErrContentLength is a response with invalid or conflicting Content-Length fields.
	ErrContentLength = errors.New("invalid or conflicting Content-Length in the response")
)

// lines calls line for each line of the head in b (without its line ending) and
// returns the head's length, the blank line included. odd reports lines ended by
// a lone LF, or blank lines before the first line. It returns ErrIncomplete, or
// ErrTooLarge once max bytes hold no end.
func lines(b []byte, max int, line func(l []byte) bool) (n int, odd bool, err error) {
	pos, seen := 0, false
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			if len(b) >= max {
				return 0, false, ErrTooLarge
			}
			return 0, false, ErrIncomplete
		}
		l := b[pos : pos+i]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		} else {
			odd = true
		}
		pos += i + 1
		if pos > max {
			return 0, false, ErrTooLarge
		}
		if len(l) == 0 {
			if seen {
				return pos, odd, nil
			}
			odd = true // a blank line before the first line
			continue
		}
		seen = true
		if !line(l) {
			line = func([]byte) bool { return true } // the verdict is in: only find the end
		}
	}
}

// ParseRequest parses the request head at the start of b, at most max bytes.
// It returns the head's length. A head that parses but is not plain has
// r.Unusual set; the caller hands such a connection to a full server.
func ParseRequest(b []byte, max int, r *Request) (int, error) {
	*r = Request{Fields: r.Fields[:0], Conn: r.Conn[:0], ContentLength: -1}
	first := true
	hosts, cls := 0, 0
	unusual := func(why string) bool {
		if r.Unusual == "" {
			r.Unusual = why
		}
		return false
	}
	n, odd, err := lines(b, max, func(l []byte) bool {
		if first {
			first = false
			return parseRequestLine(l, r, unusual)
		}
		f, ok := parseField(l)
		if !ok {
			return unusual("malformed header field")
		}
		r.Fields = append(r.Fields, f)
		switch {
		case equalFold(f.Name, "host"):
			hosts++
			r.Host = f.Value
		case equalFold(f.Name, "content-length"):
			cls++
			cl, ok := parseLength(f.Value)
			if !ok || cls > 1 {
				return unusual("Content-Length")
			}
			r.ContentLength = cl
		case equalFold(f.Name, "connection"):
			r.Conn = append(r.Conn, f.Value)
			ok := true
			tokens(f.Value, func(t string) {
				switch {
				case equalFold(t, "close"):
					r.Close = true
				case equalFold(t, "upgrade"):
					ok = false
				}
			})
			if !ok {
				return unusual("Connection: upgrade")
			}
		case equalFold(f.Name, "transfer-encoding"):
			return unusual("Transfer-Encoding")
		case equalFold(f.Name, "upgrade"):
			return unusual("Upgrade")
		case equalFold(f.Name, "expect"):
			return unusual("Expect")
		case equalFold(f.Name, "trailer"):
			return unusual("Trailer")
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	switch {
	case odd:
		unusual("line endings")
	case hosts != 1 || !httpguts.ValidHostHeader(r.Host):
		unusual("Host")
	}
	return n, nil
}

func parseRequestLine(l []byte, r *Request, unusual func(string) bool) bool {
	sp1 := bytes.IndexByte(l, ' ')
	if sp1 <= 0 {
		return unusual("request line")
	}
	rest := l[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return unusual("request line")
	}
	method, target, proto := l[:sp1], rest[:sp2], rest[sp2+1:]
	if string(proto) != "HTTP/1.1" {
		return unusual("protocol version")
	}
	for _, c := range method {
		if !isTchar(c) {
			return unusual("method")
		}
	}
	if target[0] != '/' {
		return unusual("request target form")
	}
	inPath := true
	for i, c := range target {
		switch {
		case c <= ' ' || c == 0x7f:
			return unusual("request target")
		case c == '?':
			inPath = false
		case c == '%' && inPath && (i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2])):
			return unusual("request target") // net/http's URL parsing refuses it
		}
	}
	r.Method, r.Target = str(method), str(target)
	switch r.Method {
	case "CONNECT", "PRI":
		return unusual("method")
	}
	return true
}

// ParseResponse parses the response head at the start of b, at most max bytes.
func ParseResponse(b []byte, max int, r *Response) (int, error) {
	*r = Response{Fields: r.Fields[:0], Conn: r.Conn[:0], ContentLength: -1}
	first := true
	var perr error
	fail := func(err error) bool {
		if perr == nil {
			perr = err
		}
		return false
	}
	keepAlive, te := false, false
	n, odd, err := lines(b, max, func(l []byte) bool {
		if first {
			first = false
			// HTTP/1.x SP 3DIGIT [SP reason]
			if len(l) < 12 || string(l[:7]) != "HTTP/1." || (l[7] != '0' && l[7] != '1') || l[8] != ' ' ||
				!isDigit(l[9]) || !isDigit(l[10]) || !isDigit(l[11]) || (len(l) > 12 && l[12] != ' ') {
				return fail(ErrMalformed)
			}
			r.Minor = int(l[7] - '0')
			r.Status = int(l[9]-'0')*100 + int(l[10]-'0')*10 + int(l[11]-'0')
			if r.Status < 100 {
				return fail(ErrMalformed)
			}
			return true
		}
		f, ok := parseField(l)
		if !ok {
			return fail(ErrMalformed)
		}
		r.Fields = append(r.Fields, f)
		switch {
		case equalFold(f.Name, "content-length"):
			cl, ok := parseLength(f.Value)
			if !ok || (r.ContentLength >= 0 && cl != r.ContentLength) {
				return fail(ErrContentLength)
			}
			r.ContentLength = cl
		case equalFold(f.Name, "transfer-encoding"):
			if te || !equalFold(f.Value, "chunked") {
				return fail(ErrTransferEncoding)
			}
			te = true
		case equalFold(f.Name, "connection"):
			r.Conn = append(r.Conn, f.Value)
			tokens(f.Value, func(t string) {
				switch {
				case equalFold(t, "close"):
					r.Close = true
				case equalFold(t, "keep-alive"):
					keepAlive = true
				}
			})
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	if perr != nil {
		return 0, perr
	}
	if odd {
		return 0, ErrMalformed
	}
	switch {
	case r.Status < 200 || r.Status == 204 || r.Status == 304:
		r.Chunked, r.ContentLength = false, 0 // never a body (RFC 9112 6.3); HEAD is the caller's to know
	case te:
		r.Chunked, r.ContentLength = true, -1
	}
	if r.Minor == 0 && (!keepAlive || te) {
		r.Close = true // HTTP/1.0 with a transfer coding: faulty framing, don't reuse (RFC 9112 6.1)
	}
	return n, nil
}

// parseField splits "Name: value". The name must be a token directly followed by
// ':'; the value may hold visible characters, obs-text, spaces and tabs only.
func parseField(l []byte) (Field, bool) {
	c := bytes.IndexByte(l, ':')
	if c <= 0 {
		return Field{}, false
	}
	for _, ch := range l[:c] {
		if !isTchar(ch) {
			return Field{}, false
		}
	}
	v := l[c+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	for _, ch := range v {
		if (ch < ' ' && ch != '\t') || ch == 0x7f {
			return Field{}, false
		}
	}
	return Field{Name: str(l[:c]), Value: str(v)}, true
}

// parseLength parses a Content-Length value: 1 to 18 digits.
func parseLength(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

// tokens calls f for each comma-separated, trimmed, non-empty element of v.
func tokens(v string, f func(string)) {
	for v != "" {
		t := v
		if i := indexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
			t = t[1:]
		}
		for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
			t = t[:len(t)-1]
		}
		if t != "" {
			f(t)
		}
	}
}

// HasToken reports whether any of the comma-separated values holds token, case-insensitively.
func HasToken(values []string, token string) bool {
	found := false
	for _, v := range values {
		tokens(v, func(t string) {
			if equalFold(t, token) {
				found = true
			}
		})
	}
	return found
}

// EqualFold reports whether a and b are equal ignoring ASCII case (header names are ASCII).
func EqualFold(a, b string) bool { return equalFold(a, b) }

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTchar reports whether c may appear in a token (RFC 9110 5.6.2).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// str returns b as a string sharing its memory: the caller must not modify b
// while the string is in use.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
