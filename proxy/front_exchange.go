package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/slugway/slugway/proxy/wire"
)

var bgCtx = context.Background()

// errClientWrite: writing the response to the client failed (it went away).
var errClientWrite = errors.New("writing the response to the client failed")

// How a response body is delimited.
const (
	bodyNone    = iota // HEAD, 204, 304
	bodyLength         // Content-Length
	bodyChunked        // relayed chunked, as it came
	bodyClose          // until the instance closes (then the client's connection closes too)
)

// exchange sends the current request on pc and relays the response to the
// client. started reports that response bytes reached the client (the request
// can no longer go elsewhere). pc goes back to the pool only after a clean exchange.
func (fc *frontConn) exchange(pc *upConn, prefix, path, query string, hasQuery bool, body []byte) (code int, started bool, err error) {
	h := fc.f.h
	req := &fc.req
	pc.cr.n, pc.cr.limit = 0, 0 // the response head is bounded by pc.br's size
	bw := pc.bw
	writeRequestLine(bw, req.Method, prefix, path, query, hasQuery, pc.pool.host)
	ch := fc.clientHead()
	if err := h.writeFields(bw, &ch, fc.req.Fields); err != nil {
		pc.c.Close()
		return 0, false, err
	}
	writeFraming(bw, req.Method, body != nil, int64(len(body)))
	bw.Write(body)
	if err := bw.Flush(); err != nil {
		pc.c.Close()
		return 0, false, err
	}
	fc.watch(pc)
	fc.released = false
	code, started, err = fc.relay(pc)
	if !fc.released {
		fc.release(pc, false)
	}
	return code, started, err
}

// release ends the exchange on pc: it stops watching the client and returns pc
// to the pool when clean, else closes it.
func (fc *frontConn) release(pc *upConn, clean bool) {
	fc.released = true
	if fc.unwatch() { // the client went away: pc's deadline was expired
		clean = false
	}
	if clean {
		pc.pool.put(pc)
	} else {
		pc.c.Close()
	}
}

// relay reads the instance's response head and streams the response to the
// client: the head and the body bytes already read in one write, then the rest
// as it arrives. Once the instance's response is all read, before the last
// write to the client, it releases pc.
func (fc *frontConn) relay(pc *upConn) (code int, started bool, err error) {
	h := fc.f.h
	br := pc.br
	if t := h.opts.ResponseHeaderTimeout; t > 0 {
		pc.rdl.set(pc.c, fc.now.Add(t))
	}
	resp := &fc.resp
	var head []byte
	for n1xx := 0; ; n1xx++ {
		if head, err = readResponseHead(br, resp); err != nil {
			return 0, false, err
		}
		if resp.Status == http.StatusSwitchingProtocols {
			return 0, false, errUnexpected101
		}
		if resp.Status >= 200 {
			break
		}
		if n1xx >= max1xx {
			return 0, false, errTooMany1xx
		}
		_, _ = br.Discard(len(head))
	}
	code = resp.Status

	mode := bodyLength
	switch {
	case fc.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified:
		mode = bodyNone
	case resp.Chunked:
		mode = bodyChunked
		fc.ck = wire.Chunked{}
	case resp.ContentLength < 0:
		mode = bodyClose
	}
	out := fc.appendResponseHead(fc.out[:0], head, mode)
	_, _ = br.Discard(len(head))

	remaining := resp.ContentLength
	done := mode == bodyNone || (mode == bodyLength && remaining == 0)
	lifted := false
	for {
		if avail := br.Buffered(); avail > 0 && !done {
			p, _ := br.Peek(avail)
			take := avail
			switch mode {
			case bodyLength:
				take = int(min(int64(avail), remaining))
				remaining -= int64(take)
				done = remaining == 0
			case bodyChunked:
				var cerr error
				if take, done, cerr = fc.ck.Feed(p); cerr != nil {
					return code, started, cerr
				}
			}
			if len(out)+take <= maxCoalesce {
				out = append(out, p[:take]...) // one write with the head
			} else {
				if len(out) > 0 {
					_, werr := fc.c.Write(out)
					fc.out, out, started = out[:0], out[:0], true
					if werr != nil {
						return code, true, errClientWrite
					}
				}
				started = true
				if _, werr := fc.c.Write(p[:take]); werr != nil {
					return code, true, errClientWrite
				}
			}
			_, _ = br.Discard(take)
		}
		if done {
			fc.release(pc, mode != bodyClose && !resp.Close && br.Buffered() == 0)
		}
		if len(out) > 0 {
			_, werr := fc.c.Write(out)
			fc.out = out[:0]
			out = out[:0]
			started = true
			if werr != nil {
				return code, true, errClientWrite
			}
		}
		if done {
			break
		}
		if !lifted && h.opts.ResponseHeaderTimeout > 0 { // the header timeout does not bound the body
			lifted = true
			pc.rdl.set(pc.c, time.Time{})
			if fc.gone.Load() {
				pc.cancel() // cancelled meanwhile: don't undo it
			}
		}
		if mode == bodyLength && remaining >= bigRead {
			// A large body: read it in big pieces straight into a pooled buffer
			// (bufio reads past its own buffer when it is empty), fewer syscalls.
			if err := fc.copyBig(br, &remaining); err != nil {
				return code, true, err
			}
			done = remaining == 0 // the loop's top releases pc
			continue
		}
		if _, err := br.Peek(1); err != nil {
			if mode == bodyClose && err == io.EOF {
				done = true
				fc.release(pc, false)
				break
			}
			return code, true, err
		}
	}
	return code, started, nil
}

// maxCoalesce bounds what is copied behind the response head into one write
// (and so the per-connection output buffer); larger pieces are written as they are.
const maxCoalesce = 8 << 10

// bigRead is the body size from which the relay reads into a 32 KiB buffer
// rather than through the connection's 16 KiB one.
const bigRead = 32 << 10

// copyBig relays one read of a Content-Length body of which *remaining bytes
// are left, through a pooled 32 KiB buffer. br must be empty.
func (fc *frontConn) copyBig(br *bufio.Reader, remaining *int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	n, err := br.Read(buf[:min(int64(len(buf)), *remaining)])
	if n > 0 {
		*remaining -= int64(n)
		if _, werr := fc.c.Write(buf[:n]); werr != nil {
			return errClientWrite
		}
	}
	if err != nil && *remaining > 0 {
		return err
	}
	return nil
}

// readResponseHead reads until br holds a complete response head, parses it
// into resp and returns its bytes (valid until br is read again).
func readResponseHead(br *bufio.Reader, resp *wire.Response) ([]byte, error) {
	for {
		b, _ := br.Peek(br.Buffered())
		if len(b) > 0 {
			n, err := wire.ParseResponse(b, br.Size(), resp)
			switch err {
			case nil:
				return b[:n], nil
			case wire.ErrTooLarge:
				return nil, errHeadersTooLarge
			case wire.ErrIncomplete:
			default:
				return nil, err
			}
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return nil, err
		}
	}
}

// appendResponseHead appends the head the client gets: the instance's status
// line as HTTP/1.1, its fields less hop-by-hop ones (and those its Connection
// names), Transfer-Encoding for a chunked relay, Date when missing, and
// Connection: close when this connection ends after the response.
func (fc *frontConn) appendResponseHead(out, head []byte, mode int) []byte {
	resp := &fc.resp
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
		switch fieldKind(f.Name) {
		case fieldHop:
			if !resp.Chunked || !wire.EqualFold(f.Name, "trailer") { // trailers are relayed with the chunks
				continue
			}
		case fieldContentLength:
			if resp.Chunked {
				continue
			}
		}
		if len(resp.Conn) > 0 && wire.HasToken(resp.Conn, f.Name) {
			continue
		}
		if !hasDate && wire.EqualFold(f.Name, "date") {
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
	if mode == bodyClose || fc.req.Close || fc.f.closing.Load() || fc.f.draining.Load() {
		out = append(out, "Connection: close\r\n"...)
		fc.req.Close = true // serve stops after this response
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
