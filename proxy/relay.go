package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"time"

	"github.com/slugway/slugway/proxy/wire"
)

// The response relay: the instance's response, its head already parsed, back
// to the client. The front end takes the body in the instance's framing
// (chunked stays chunked, trailers included), relayed by count from the
// connection's buffer; net/http's side takes it decoded, and net/http frames
// it for its client (HTTP/1.x or HTTP/2).

// bodyMode is how a response body is delimited.
type bodyMode uint8

const (
	bodyNone    bodyMode = iota // HEAD, 1xx, 204, 304
	bodyLength                  // Content-Length
	bodyChunked                 // chunked
	bodyClose                   // until the instance closes (then the client's connection closes too)
)

func responseBodyMode(method string, resp *wire.Response) bodyMode {
	switch {
	case method == http.MethodHead || resp.Status == http.StatusNoContent || resp.Status == http.StatusNotModified:
		return bodyNone
	case resp.Chunked:
		return bodyChunked
	case resp.ContentLength < 0:
		return bodyClose
	case resp.ContentLength == 0:
		return bodyNone
	}
	return bodyLength
}

// maxCoalesce bounds what is copied behind the response head into one write
// to the client (and so the front end's output buffer); larger pieces are
// written as they are.
const maxCoalesce = 8 << 10

// bigRead is the body size from which the relay reads into a 32 KiB buffer
// rather than through the connection's 16 KiB one.
const bigRead = 32 << 10

// relay relays the response whose head (req.resp) is at the start of pc.br.
// It releases pc once the instance's response is all read, before the last
// write to the client. started reports whether the response reached the client
// (rw.started): a failure before that can still be answered otherwise.
func (h *Handler) relay(pc *upConn, req *request, head []byte, rw responder) (started bool, err error) {
	resp := &req.resp
	mode := responseBodyMode(req.method, resp)
	rw.writeHead(req, head, mode)
	br := pc.br
	_, _ = br.Discard(len(head))
	if !rw.raw() {
		err := h.relayDecoded(pc, req, mode, rw.(*httpResponder))
		return rw.started(), err
	}
	if mode == bodyChunked {
		req.ck = wire.Chunked{}
	}
	remaining := resp.ContentLength
	done := mode == bodyNone
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
				if take, done, cerr = req.ck.Feed(p); cerr != nil {
					return rw.started(), cerr
				}
			}
			if err := rw.write(p[:take]); err != nil {
				return rw.started(), err
			}
			_, _ = br.Discard(take)
		}
		if done {
			h.release(pc, req, rw, mode != bodyClose && !resp.Close && br.Buffered() == 0)
		}
		if err := rw.flush(); err != nil {
			return rw.started(), err
		}
		if done {
			return rw.started(), nil
		}
		if !lifted {
			lifted = true
			h.liftHeaderDeadline(pc, rw)
		}
		if mode == bodyLength && remaining >= bigRead {
			// A large body: read it in big pieces straight into a pooled buffer
			// (bufio reads past its own buffer when it is empty), fewer syscalls.
			if err := copyBig(br, &remaining, rw); err != nil {
				return rw.started(), err
			}
			done = remaining == 0 // the loop's top releases pc
			continue
		}
		if _, err := br.Peek(1); err != nil {
			if mode == bodyClose && err == io.EOF {
				h.release(pc, req, rw, false)
				return rw.started(), nil
			}
			return rw.started(), err
		}
	}
}

// liftHeaderDeadline: --response-header-timeout does not bound the body.
func (h *Handler) liftHeaderDeadline(pc *upConn, rw responder) {
	if h.opts.ResponseHeaderTimeout > 0 {
		pc.rdl.set(pc.c, time.Time{})
		if rw.gone() {
			pc.cancel() // cancelled meanwhile: don't undo it
		}
	}
}

// copyBig relays one read of a Content-Length body of which *remaining bytes
// are left, through a pooled 32 KiB buffer. br must be empty.
func copyBig(br *bufio.Reader, remaining *int64, rw responder) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	n, err := br.Read(buf[:min(int64(len(buf)), *remaining)])
	if n > 0 {
		*remaining -= int64(n)
		if werr := rw.write(buf[:n]); werr != nil {
			return werr
		}
	}
	if err != nil && *remaining > 0 {
		return err
	}
	return nil
}

// relayDecoded relays the body decoded, for net/http, then the trailers.
func (h *Handler) relayDecoded(pc *upConn, req *request, mode bodyMode, hr *httpResponder) error {
	br := pc.br
	resp := &req.resp
	var src io.Reader
	switch mode {
	case bodyLength:
		src = io.LimitReader(br, resp.ContentLength)
	case bodyChunked:
		src = httputil.NewChunkedReader(br)
	case bodyClose:
		src = br
	}
	if src != nil {
		if mode != bodyLength || int64(br.Buffered()) < resp.ContentLength {
			h.liftHeaderDeadline(pc, hr)
		}
		n, err := relayBody(hr, src)
		if err != nil {
			return err
		}
		if mode == bodyLength && n < resp.ContentLength {
			return io.ErrUnexpectedEOF
		}
		if mode == bodyChunked {
			pc.cr.limit = pc.cr.n + int64(h.opts.MaxResponseHeaderBytes)
			tr, err := textproto.NewReader(br).ReadMIMEHeader()
			pc.cr.limit = 0
			if err != nil {
				return err
			}
			hr.trailers(http.Header(tr))
		}
	}
	hr.commit()
	h.release(pc, req, hr, mode != bodyClose && !resp.Close)
	return nil
}

// relayBody copies a decoded body to net/http's client, flushing each piece
// when the response streams (unknown length, server-sent events). Write errors
// are errClientWrite.
func relayBody(hr *httpResponder, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			total += int64(n)
			if err := hr.write(buf[:n]); err != nil {
				return total, err
			}
			if err := hr.flush(); err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
