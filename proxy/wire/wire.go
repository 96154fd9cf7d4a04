// Package wire parses HTTP/1.1 message heads and chunked bodies straight from
// the bytes read off a connection, for the proxy's fast HTTP/1.1 front end.
//
// It is deliberately narrow. A request head is "plain" (one the fast path may
// forward: origin-form target, HTTP/1.1, exactly one Host, at most one valid
// Content-Length, no Transfer-Encoding, Upgrade, Expect or Trailer, every line
// ending in CRLF, no obs-fold), or "unusual" (valid, but left to a full server
// such as net/http), or refused (Request.Reject): its framing is ambiguous or it
// breaks the syntax where two parsers could read different messages (RFC 9112
// sections 2.2, 5.2 and 6.3: CL with TE, repeated or invalid Content-Length, a
// transfer coding other than one final chunked, obs-fold, bare CR or LF, NUL,
// control bytes), and whichever server parsed it answers 400 (501) and closes.
// Response heads come from instances: anything malformed is an error (the
// proxy answers 502).
//
// Parsed strings share the memory of the parsed buffer (no copies, no
// allocations): they are valid only until the caller reuses that buffer.
package wire

import (
	"bytes"
	"errors"
	"strings"
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
	// Reject is set when the head must be refused (Unusual is then its
	// Reason): answer Reject.Status and close the connection.
	Reject *RequestError
	// Chunked is true for a valid "Transfer-Encoding: chunked" (the body is chunked).
	Chunked bool
	// Upgrade is true when the request asks to switch protocols (Upgrade
	// together with "Connection: upgrade"), or is CONNECT: what follows its
	// head may not be HTTP/1.
	Upgrade bool
}

// Response is a parsed response head.
type Response struct {
	Status int
	// Reason is the reason phrase ("" when there is none); it holds no control bytes.
	Reason string
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

// RequestError is a request head that must be refused rather than served or
// handed on: its framing is ambiguous (RFC 9112 section 6.3), or it breaks the
// message syntax in a way that lets two parsers read different messages from
// the same bytes (bare CR, bare LF, NUL, obs-fold). The answer is Status, and
// the connection closes after it: what follows the head cannot be trusted to
// be the next request.
type RequestError struct {
	// Status is 400, or 501 for a transfer coding the proxy does not implement.
	Status int
	// Reason is a fixed text (it may label a metric).
	Reason string
}

func (e *RequestError) Error() string { return "refused request head: " + e.Reason }

// The request errors, values so that parsing allocates nothing.
var (
	ErrCLAndTE            = &RequestError{400, "Content-Length together with Transfer-Encoding"}
	ErrRepeatedLength     = &RequestError{400, "more than one Content-Length"}
	ErrBadLength          = &RequestError{400, "invalid Content-Length"}
	ErrChunkedNotFinal    = &RequestError{400, "Transfer-Encoding whose final coding is not chunked"}
	ErrTransferCoding     = &RequestError{501, "a transfer coding other than chunked"}
	ErrTransferEncoding10 = &RequestError{400, "Transfer-Encoding in an HTTP/1.0 request"}
	ErrObsFold            = &RequestError{400, "obs-fold (a header line starting with whitespace)"}
	ErrBareCR             = &RequestError{400, "a CR not followed by LF"}
	ErrBareLF             = &RequestError{400, "a line ending in LF without CR"}
	ErrNUL                = &RequestError{400, "a NUL byte"}
	ErrControl            = &RequestError{400, "a control byte in a header field value"}
	ErrFieldName          = &RequestError{400, "malformed header field"}
	requestErrors         = []*RequestError{ErrCLAndTE, ErrRepeatedLength, ErrBadLength, ErrChunkedNotFinal, ErrTransferCoding, ErrTransferEncoding10, ErrObsFold, ErrBareCR, ErrBareLF, ErrNUL, ErrControl, ErrFieldName}
)

// RequestErrors lists every *RequestError ParseRequest reports (for metrics and tests).
func RequestErrors() []*RequestError { return append([]*RequestError(nil), requestErrors...) }

// lines calls line for each line of the head in b (without its line ending) and
// returns the head's length, the blank line included. bareLF reports lines
// ended by a lone LF; leading, blank lines before the first line. It returns
// ErrIncomplete, or ErrTooLarge once max bytes hold no end.
func lines(b []byte, max int, line func(l []byte, bareLF bool) bool) (n int, bareLF, leading bool, err error) {
	pos, seen := 0, false
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			if len(b) >= max {
				return 0, false, false, ErrTooLarge
			}
			return 0, false, false, ErrIncomplete
		}
		l := b[pos : pos+i]
		lf := false
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		} else {
			bareLF, lf = true, true
		}
		pos += i + 1
		if pos > max {
			return 0, false, false, ErrTooLarge
		}
		if len(l) == 0 {
			if seen {
				return pos, bareLF, leading, nil
			}
			leading = true // a blank line before the first line
			continue
		}
		seen = true
		if !line(l, lf) {
			line = func([]byte, bool) bool { return true } // the verdict is in: only find the end
		}
	}
}

// ParseRequest parses the request head at the start of b, at most max bytes.
// It returns the head's length. A head that parses but is not plain has
// r.Unusual set; the caller hands such a connection to a full server. A head
// that must be refused also has r.Reject set (and Unusual to its Reason): the
// caller answers r.Reject.Status and closes the connection.
func ParseRequest(b []byte, max int, r *Request) (int, error) {
	*r = Request{Fields: r.Fields[:0], Conn: r.Conn[:0], ContentLength: -1}
	first := true
	hosts, cls := 0, 0
	te, http10, upgrade := false, false, false
	unusual := func(why string) bool {
		if r.Unusual == "" {
			r.Unusual = why
		}
		return false
	}
	reject := func(e *RequestError) bool {
		if r.Reject == nil {
			r.Reject = e
			r.Unusual = e.Reason
		}
		return false
	}
	n, bareLF, leading, err := lines(b, max, func(l []byte, lf bool) bool {
		if lf {
			return reject(ErrBareLF)
		}
		if first {
			first = false
			http10 = bytes.HasSuffix(l, []byte(" HTTP/1.0"))
			if !parseRequestLine(l, r, unusual) {
				if e := controlBytes(l); e != nil {
					return reject(e)
				}
			}
			return true // the fields may still hold a reason to refuse
		}
		if l[0] == ' ' || l[0] == '\t' {
			return reject(ErrObsFold)
		}
		f, bad := parseField(l)
		if bad != nil {
			if e := controlBytes(l); e != nil {
				bad = e // the more precise reason
			}
			return reject(bad)
		}
		r.Fields = append(r.Fields, f)
		switch {
		case equalFold(f.Name, "host"):
			hosts++
			r.Host = f.Value
		case equalFold(f.Name, "content-length"):
			cls++
			cl, ok := parseLength(f.Value)
			switch {
			case !ok:
				return reject(ErrBadLength)
			case cls > 1: // nginx refuses a repeated one even with the same value
				return reject(ErrRepeatedLength)
			}
			r.ContentLength = cl
		case equalFold(f.Name, "connection"):
			r.Conn = append(r.Conn, f.Value)
		case equalFold(f.Name, "transfer-encoding"):
			if e := checkCodings(f.Value, te); e != nil {
				return reject(e)
			}
			te = true
		case equalFold(f.Name, "upgrade"):
			upgrade = true
			unusual("Upgrade")
		case equalFold(f.Name, "expect"):
			unusual("Expect")
		case equalFold(f.Name, "trailer"):
			unusual("Trailer")
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	switch {
	case r.Reject != nil:
	case bareLF:
		reject(ErrBareLF)
	case te && cls > 0:
		reject(ErrCLAndTE)
	case te && http10:
		reject(ErrTransferEncoding10)
	}
	if r.Reject != nil {
		r.Unusual = r.Reject.Reason
		return n, nil
	}
	if len(r.Conn) > 0 {
		r.Close = httpguts.HeaderValuesContainsToken(r.Conn, "close")
		if httpguts.HeaderValuesContainsToken(r.Conn, "upgrade") {
			r.Upgrade = upgrade
			unusual("Connection: upgrade")
		}
	}
	r.Chunked = te
	if bytes.HasPrefix(b, []byte("CONNECT ")) {
		r.Upgrade = true
	}
	switch {
	case te:
		unusual("Transfer-Encoding")
	case leading:
		unusual("line endings")
	case hosts != 1 || !httpguts.ValidHostHeader(r.Host):
		unusual("Host")
	}
	return n, nil
}

// controlBytes says whether a line that did not parse holds a bare CR or a
// NUL (only looked for then: a line that parses has neither).
func controlBytes(l []byte) *RequestError {
	switch {
	case bytes.IndexByte(l, '\r') >= 0:
		return ErrBareCR
	case bytes.IndexByte(l, 0) >= 0:
		return ErrNUL
	}
	return nil
}

// checkCodings checks a request's Transfer-Encoding value: the only coding a
// request may have is one final chunked (RFC 9112 section 6.3: otherwise 400
// and close; a coding the proxy does not implement is 501, as nginx and
// net/http answer). seen: an earlier Transfer-Encoding field named chunked.
func checkCodings(v string, seen bool) *RequestError {
	var last string
	n, chunked, other := 0, 0, false
	for v != "" {
		t := v
		if i := strings.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		t = strings.Trim(t, " \t")
		if t == "" {
			continue
		}
		n++
		last = t
		if equalFold(t, "chunked") {
			chunked++
		} else {
			other = true
		}
	}
	switch {
	case n == 0:
		return ErrTransferCoding
	case seen || chunked > 1 || !equalFold(last, "chunked"):
		return ErrChunkedNotFinal // chunked twice, or not last: the body's end is unknowable
	case other:
		return ErrTransferCoding
	}
	return nil
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
		if !httpguts.IsTokenRune(rune(c)) {
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

// ParseResponse parses the response head at the start of b, at most max bytes
// (the caller's limit on response heads: over it, ErrTooLarge). Control bytes
// (bare CR, NUL, any CTL but HTAB) in the status line or a field value, obs-fold
// and bare LF line endings are ErrMalformed.
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
	te := false
	n, bareLF, leading, err := lines(b, max, func(l []byte, lf bool) bool {
		if lf {
			return fail(ErrMalformed)
		}
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
			if len(l) > 12 {
				// reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ) (RFC 9112 section 4)
				if !validValue(l[13:]) {
					return fail(ErrMalformed)
				}
				r.Reason = str(l[13:])
			}
			return true
		}
		f, bad := parseField(l)
		if bad != nil {
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
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	if perr != nil {
		return 0, perr
	}
	if bareLF || leading {
		return 0, ErrMalformed
	}
	keepAlive := false
	if len(r.Conn) > 0 {
		r.Close = httpguts.HeaderValuesContainsToken(r.Conn, "close")
		keepAlive = httpguts.HeaderValuesContainsToken(r.Conn, "keep-alive")
	}
	switch {
	case NoBody(r.Status):
		r.Chunked, r.ContentLength = false, 0 // never a body (RFC 9112 6.3); HEAD is the caller's to know
	case te:
		r.Chunked, r.ContentLength = true, -1
	}
	if r.Minor == 0 && (!keepAlive || te) {
		r.Close = true // HTTP/1.0 with a transfer coding: faulty framing, don't reuse (RFC 9112 6.1)
	}
	return n, nil
}

// NoBody reports whether a response with this status never has a body (1xx,
// 204, 304: RFC 9112 section 6.3). The proxy drops Content-Length and
// Transfer-Encoding from such a response rather than relay framing that
// describes no body.
func NoBody(status int) bool { return status < 200 || status == 204 || status == 304 }

// parseField splits "Name: value". The name must be a token directly followed by
// ':'; the value may hold visible characters, obs-text, spaces and tabs only.
func parseField(l []byte) (Field, *RequestError) {
	c := bytes.IndexByte(l, ':')
	if c <= 0 {
		return Field{}, ErrFieldName
	}
	for _, ch := range l[:c] {
		if !httpguts.IsTokenRune(rune(ch)) {
			return Field{}, ErrFieldName
		}
	}
	v := l[c+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	if !validValue(v) {
		return Field{}, ErrControl
	}
	return Field{Name: str(l[:c]), Value: str(v)}, nil
}

// validValue reports whether v holds only HTAB, SP, VCHAR and obs-text: no
// control byte (CR, LF, NUL and the others) and no DEL.
func validValue(v []byte) bool {
	for _, ch := range v {
		if (ch < ' ' && ch != '\t') || ch == 0x7f {
			return false
		}
	}
	return true
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

// HasToken reports whether any of the comma-separated values holds token,
// case-insensitively (it is httpguts.HeaderValuesContainsToken).
func HasToken(values []string, token string) bool {
	return httpguts.HeaderValuesContainsToken(values, token)
}

// EqualFold reports whether a and b are equal ignoring ASCII case (header
// names are ASCII). It stays here, unlike the token helpers (now httpguts'),
// because httpguts exports no ASCII-only fold and strings.EqualFold folds
// Unicode ("\u212a", the Kelvin sign, equals "k" there, which no HTTP token
// comparison may do); BenchmarkEqualFold measures it against strings.EqualFold
// on the proxy's per-field name comparisons, where it is no slower.
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

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// str returns b as a string sharing its memory: the caller must not modify b
// while the string is in use.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
