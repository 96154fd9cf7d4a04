// Package framing holds net/http's HTTP/1.x connections to the same request
// framing rules as the fast front end (package wire): every request head is
// parsed by wire.ParseRequest before net/http reads it, and one that must be
// refused (CL with TE, repeated or invalid Content-Length, a transfer coding
// other than one final chunked, obs-fold, bare CR or LF, NUL: RFC 9112
// sections 2.2, 5.2 and 6.3) never reaches net/http, which would otherwise
// accept CL+TE by dropping Content-Length, join obs-folds and accept bare LFs.
//
// In its place net/http reads a stand-in request that it answers itself with
// the refusal's status (400, or 501 for an unknown transfer coding) and then
// closes the connection; what the client sent after the refused head is never
// read. The stand-in is answered in turn, after any request before it on the
// connection, so pipelined responses stay in order.
//
// Bodies are followed (Content-Length, chunked: wire.Chunked) so that the
// next head is found where net/http will look for it. After a request that
// switches protocols (Upgrade, CONNECT) or the HTTP/2 preface, the bytes are
// not HTTP/1 any more and pass unchecked.
package framing

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"

	"github.com/slugway/slugway/proxy/wire"
)

// Conn checks the request framing of the HTTP/1.x stream read from the
// connection it wraps. It is for one reader (the http.Server's connection).
type Conn struct {
	net.Conn
	maxHead int

	buf  []byte // read from Conn, not yet given to the reader; buf[:pass] is checked
	pass int

	state     state
	remaining int64 // of a Content-Length body
	ck        wire.Chunked
	req       wire.Request

	standIn []byte // the refusal's stand-in request, still to be read
	err     error  // once the stand-in is read: the read error from then on
	// Refused is the refused head's error, once one was refused.
	Refused *wire.RequestError

	// OnRefuse, when set, is called once with the refused head's error.
	OnRefuse func(*wire.RequestError)

	tls *tls.ConnectionState // set by TLSListener
}

type state uint8

const (
	stHead state = iota
	stLength
	stChunked
	stRaw // not HTTP/1 any more, or handed to net/http unchecked
)

// NewConn wraps c. maxHead is the server's limit on request heads (its
// MaxHeaderBytes plus what it allows for the request line): a head that does
// not end within it is passed on unchecked, and net/http answers 431.
func NewConn(c net.Conn, maxHead int) *Conn {
	return &Conn{Conn: c, maxHead: maxHead}
}

// Stand-in requests net/http answers itself, then closes the connection: a
// request line it cannot parse (400 Bad Request), and a transfer coding it
// does not implement (501 Not Implemented).
var (
	standIn400 = []byte("REFUSED\r\n\r\n")
	standIn501 = []byte("POST / HTTP/1.1\r\nHost: refused\r\nTransfer-Encoding: refused\r\n\r\n")
)

func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.pass > 0 {
			n := copy(p, c.buf[:c.pass])
			c.buf = c.buf[n:]
			c.pass -= n
			if len(c.buf) == 0 {
				c.buf = nil
			}
			return n, nil
		}
		if c.standIn != nil || c.err != nil {
			if len(c.standIn) == 0 {
				return 0, c.err
			}
			n := copy(p, c.standIn)
			c.standIn = c.standIn[n:]
			if len(c.standIn) == 0 {
				c.standIn = []byte{}
			}
			return n, nil
		}
		if c.state == stRaw {
			if len(c.buf) > 0 {
				c.pass = len(c.buf)
				continue
			}
			return c.Conn.Read(p)
		}
		if len(c.buf) > 0 && c.check() {
			continue
		}
		// More bytes are needed to decide.
		if err := c.fill(len(p)); err != nil {
			var ne net.Error
			if len(c.buf) > 0 && !(errors.As(err, &ne) && ne.Timeout()) {
				// An incomplete head or body at the end: net/http sees what
				// there is, then the error.
				c.state = stRaw
				continue
			}
			// A timeout (a deadline, or net/http ending its background read)
			// keeps what was read for the next Read.
			return 0, err
		}
	}
}

// fill reads more from the connection into buf.
func (c *Conn) fill(hint int) error {
	if cap(c.buf)-len(c.buf) < 512 {
		nb := make([]byte, len(c.buf), max(2*cap(c.buf), len(c.buf)+max(hint, 4096)))
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if n > 0 {
		return nil
	}
	return err
}

// check decides about the bytes at buf[pass:] (pass is 0 here): it reports
// whether some of them may now be passed on (or the state changed).
func (c *Conn) check() bool {
	switch c.state {
	case stLength:
		n := int64(len(c.buf))
		if n > c.remaining {
			n = c.remaining
		}
		c.pass = int(n)
		c.remaining -= n
		if c.remaining == 0 {
			c.state = stHead
		}
		return true
	case stChunked:
		n, done, err := c.ck.Feed(c.buf)
		switch {
		case err != nil:
			// net/http's chunked reader fails at the same byte: the request's
			// body breaks, and nothing after it is read as a request.
			c.state = stRaw
			return true
		case done:
			c.state = stHead
		}
		c.pass = n
		return n > 0 || done
	}
	// stHead
	switch {
	case bytes.HasPrefix(c.buf, h2Preface):
		c.state = stRaw // the HTTP/2 preface: net/http serves h2c
		return true
	case bytes.HasPrefix(h2Preface, c.buf):
		return false // perhaps the preface: wait for the rest of its line
	}
	n, err := wire.ParseRequest(c.buf, c.maxHead, &c.req)
	switch err {
	case nil:
	case wire.ErrIncomplete:
		return false
	default: // too large: net/http answers 431
		c.state = stRaw
		return true
	}
	if e := c.req.Reject; e != nil {
		c.Refused = e
		if c.OnRefuse != nil {
			c.OnRefuse(e)
		}
		c.buf, c.pass = nil, 0
		c.standIn = standIn400
		if e.Status == 501 {
			c.standIn = standIn501
		}
		c.err = errRefused
		c.state = stRaw
		return true
	}
	c.pass = n
	switch {
	case c.req.Upgrade:
		c.state = stRaw
	case c.req.Chunked:
		c.state, c.ck = stChunked, wire.Chunked{}
	case c.req.ContentLength > 0:
		c.state, c.remaining = stLength, c.req.ContentLength
	}
	return true
}

var h2Preface = []byte("PRI * HTTP/2.0\r\n")

type refusedError struct{}

func (refusedError) Error() string { return "the connection's last request head was refused" }

var errRefused error = refusedError{}

// CloseWrite half-closes the wrapped connection when it can (net/http does it
// before closing, so that the client reads the error response).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Listener wraps every connection a plaintext listener accepts in a Conn.
type Listener struct {
	net.Listener
	MaxHead  int
	OnRefuse func(*wire.RequestError)
}

// Accept returns the next connection, wrapped.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := NewConn(c, l.MaxHead)
	fc.OnRefuse = l.OnRefuse
	return fc, nil
}

// MaxHead is the head limit to give a Conn in front of an http.Server with
// this MaxHeaderBytes: at least what net/http reads before it answers 431
// (MaxHeaderBytes plus its 4 KiB allowance), so that no head net/http would
// accept passes unchecked.
func MaxHead(maxHeaderBytes int) int { return maxHeaderBytes + 8<<10 }
