package proxy

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"github.com/slugway/slugway/proxy/wire"
)

// The front end's responder: it answers the client with bytes on its
// connection. The response head and the body's first bytes are coalesced into
// one write of at most maxCoalesce bytes (beyond a large head).

func (fc *frontConn) raw() bool     { return true }
func (fc *frontConn) gone() bool    { return fc.left.Load() }
func (fc *frontConn) started() bool { return fc.sent }

// writeHead appends the head the client gets (written by the next flush).
func (fc *frontConn) writeHead(req *request, head []byte, mode bodyMode) {
	fc.sent = false
	fc.out = fc.appendResponseHead(fc.out[:0], req, head, mode)
}

func (fc *frontConn) write(p []byte) error {
	if len(fc.out)+len(p) <= maxCoalesce {
		fc.out = append(fc.out, p...)
		return nil
	}
	if err := fc.flush(); err != nil {
		return err
	}
	fc.sent = true
	if _, err := fc.c.Write(p); err != nil {
		return errClientWrite
	}
	return nil
}

func (fc *frontConn) flush() error {
	if len(fc.out) == 0 {
		return nil
	}
	fc.sent = true
	_, err := fc.c.Write(fc.out)
	fc.out = fc.out[:0]
	if cap(fc.out) > 2*maxCoalesce {
		fc.out = nil // grown for a large head: don't keep it
	}
	if err != nil {
		return errClientWrite
	}
	return nil
}

// answer writes one of the proxy's own responses (without the body for HEAD).
func (fc *frontConn) answer(code int, fields []wire.Field, body []byte) int {
	out := appendStatusLine(fc.out[:0], code)
	for _, f := range fields {
		out = append(out, f.Name...)
		out = append(out, ": "...)
		out = append(out, f.Value...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Content-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n"...)
	out = appendDate(out)
	if fc.pr.close || fc.f.closing.Load() || fc.f.draining.Load() {
		out = append(out, "Connection: close\r\n"...)
		fc.pr.close = true
	}
	out = append(out, "\r\n"...)
	if fc.pr.method != http.MethodHead {
		out = append(out, body...)
	}
	fc.out = out
	if fc.flush() != nil {
		return codeClientGone
	}
	return code
}

// appendResponseHead appends the head the client gets: the instance's status
// line as HTTP/1.1, its fields less those dropResponseField drops (a chunked
// body is relayed as it came, so Trailer stays), Transfer-Encoding for a
// chunked relay, Date when missing, and Connection: close when this connection
// ends after the response.
func (fc *frontConn) appendResponseHead(out []byte, req *request, head []byte, mode bodyMode) []byte {
	resp := &req.resp
	line := head[:bytes.IndexByte(head, '\n')]
	line = bytes.TrimSuffix(line, []byte{'\r'})
	out = append(out, "HTTP/1.1"...)
	out = append(out, line[8:]...)
	if len(line) == 12 {
		out = append(out, ' ') // "HTTP/1.1 200" without a reason: the SP before it is not optional
	}
	out = append(out, "\r\n"...)
	hasDate := false
	for _, f := range resp.Fields {
		if dropResponseField(f.Name, resp.Conn, resp.Chunked, resp.Chunked) {
			continue
		}
		if !hasDate && len(f.Name) == 4 && wire.EqualFold(f.Name, "date") {
			hasDate = true
		}
		out = append(out, f.Name...)
		out = append(out, ": "...)
		out = append(out, f.Value...)
		out = append(out, "\r\n"...)
	}
	if resp.Chunked && resp.Status != http.StatusNoContent && resp.Status != http.StatusNotModified {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if !hasDate {
		out = appendDate(out)
	}
	if mode == bodyClose || req.close || fc.f.closing.Load() || fc.f.draining.Load() {
		out = append(out, "Connection: close\r\n"...)
		req.close = true // serve stops after this response
	}
	return append(out, "\r\n"...)
}

func appendStatusLine(out []byte, code int) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(code)...)
	return append(out, "\r\n"...)
}

func appendDate(out []byte) []byte {
	out = append(out, "Date: "...)
	out = time.Now().UTC().AppendFormat(out, http.TimeFormat)
	return append(out, "\r\n"...)
}
