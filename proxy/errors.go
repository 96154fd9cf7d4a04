package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/slugway/slugway/proxy/wire"
)

// errorFields are the header fields of every answer the proxy gives itself.
var errorFields = [...]wire.Field{
	{Name: "Content-Type", Value: "application/json"},
	{Name: "X-Content-Type-Options", Value: "nosniff"},
	{Name: "Cache-Control", Value: "no-store"},
}

// writeError is the one way the proxy answers by itself, on either server: a
// small JSON body such as {"error":"no healthy instance","slug":"x"}, which
// never includes upstream addresses, with errorFields and any extra ones
// (Retry-After, Allow). It returns code.
func writeError(rw responder, code int, msg, slug string, extra ...wire.Field) int {
	var arr [len(errorFields) + 2]wire.Field
	fields := append(append(arr[:0], errorFields[:]...), extra...)
	return rw.answer(code, fields, errorJSON(msg, slug))
}

type errorBody struct {
	Error string `json:"error"`
	Slug  string `json:"slug,omitempty"`
}

// errorJSON is the body of the proxy's own error responses, newline-terminated.
func errorJSON(msg, slug string) []byte {
	b, _ := json.Marshal(errorBody{Error: msg, Slug: slug})
	return append(b, '\n')
}

// errKind classifies a failed attempt.
type errKind uint8

const (
	errOther   errKind = iota
	errDial            // never reached the instance: safe to send elsewhere
	errReset           // the connection broke before a response
	errTimeout         // no response in time
	errClient          // the client went away
	errBodyTooLarge
	errBody // reading the client's body failed
)

func (k errKind) String() string {
	return [...]string{"other", "dial", "reset", "timeout", "client", "body-too-large", "body"}[k]
}

// dialError marks errors of the proxy's dialer, whatever the Dial hook returns.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Errors of the upstream client and the relay.
var (
	errClientBody      = errors.New("reading the client's request body")
	errClientWrite     = errors.New("writing the response to the client failed")
	errHeadersTooLarge = errors.New("the instance's response head is larger than --max-response-header-bytes")
	errUnexpected101   = errors.New("the instance switched protocols on a request that did not ask to")
	errTooMany1xx      = errors.New("the instance sent too many 1xx responses")
	errNotPooled       = errors.New("this server cannot send the request through the Transport")
)

// classify classifies a failed attempt: the client's going away first.
func classify(rw responder, err error) errKind {
	if rw.gone() || errors.Is(err, errClientWrite) {
		return errClient
	}
	return classifyErr(err)
}

// classifyErr classifies a failure that is not the client's going away.
func classifyErr(err error) errKind {
	var de *dialError
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return errBodyTooLarge
	case errors.As(err, &de):
		return errDial // even a dial timeout never reached the instance
	case errors.Is(err, errClientBody):
		return errBody
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case isStaleConnErr(err):
		return errReset
	}
	return errOther
}

// isStaleConnErr reports a connection that ended under the request: EOF or a reset.
func isStaleConnErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
