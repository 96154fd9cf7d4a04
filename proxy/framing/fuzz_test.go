package framing_test

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/slugway/slugway/proxy/framing"
)

// pipeConn is a net.Conn that reads data in pieces of the given sizes.
type pipeConn struct {
	net.Conn
	data   []byte
	pieces []byte
	i      int
}

func (c *pipeConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.pieces) > 0 {
		n = max(int(c.pieces[c.i%len(c.pieces)]), 1)
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// What a framing.Conn passes on is always the input itself, up to a refused
// head (and then a stand-in, without any byte from there on), whatever the
// pieces the input arrives in: it never invents, reorders or skips bytes.
func FuzzConn(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x00",
	} {
		f.Add([]byte(s), []byte{1, 7, 3})
	}
	f.Fuzz(func(t *testing.T, data, pieces []byte) {
		c := framing.NewConn(&pipeConn{data: bytes.Clone(data), pieces: pieces}, 1<<12)
		out, _ := io.ReadAll(c)
		if c.Refused == nil {
			if !bytes.Equal(out, data) {
				t.Fatalf("passed %q of %q", out, data)
			}
			return
		}
		i := bytes.LastIndex(out, []byte("REFUSED\r\n\r\n"))
		if c.Refused.Status == 501 {
			i = bytes.LastIndex(out, []byte("POST / HTTP/1.1\r\nHost: refused\r\n"))
		}
		if i < 0 || !bytes.HasPrefix(data, out[:i]) {
			t.Fatalf("refused (%v): passed %q of %q", c.Refused, out, data)
		}
	})
}
