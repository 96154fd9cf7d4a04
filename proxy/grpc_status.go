package proxy

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A gRPC call whose instance's stream broke after the response began (the
// instance reset it, or its connection died) ends with a gRPC status in the
// trailers, not with a reset of the client's stream. net/http can only reset a
// stream with INTERNAL_ERROR, which a gRPC client reports as codes.Internal,
// whatever the cause. The status says what happened instead:
//   - DEADLINE_EXCEEDED when the call's grpc-timeout had passed (an instance
//     ends a call at its deadline with RST_STREAM CANCEL, no status);
//   - UNAVAILABLE otherwise, with the error in grpc-message.
// The client must still be there, and it must be an HTTP/2 gRPC response.

// grpcEndedError is a broken gRPC response that ended with a status: it is
// logged and traced as the break it was, but the client's stream is not reset.
type grpcEndedError struct{ err error }

func (e *grpcEndedError) Error() string { return "ended with a gRPC status: " + e.err.Error() }
func (e *grpcEndedError) Unwrap() error { return e.err }

// grpcBrokenStatus reports the trailers that end the broken gRPC response of r
// (response fields hdr, the request seen at start), or ok false if it is not one.
func grpcBrokenStatus(r *http.Request, hdr http.Header, start time.Time, err error) (tr http.Header, ok bool) {
	if r.ProtoMajor != 2 || r.Context().Err() != nil || errors.Is(err, errClientWrite) ||
		!strings.HasPrefix(hdr.Get("Content-Type"), "application/grpc") {
		return nil, false
	}
	if d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok && time.Since(start) >= d {
		return http.Header{"Grpc-Status": {"4"}, "Grpc-Message": {grpcMessage("slugway: the call's grpc-timeout (" + d.String() + ") passed before the instance ended it")}}, true
	}
	return http.Header{"Grpc-Status": {"14"}, "Grpc-Message": {grpcMessage("slugway: the instance's stream broke: " + err.Error())}}, true
}

// parseGRPCTimeout parses a grpc-timeout value: 1 to 8 digits and a unit
// (H, M, S, m, u, n), as the gRPC over HTTP/2 protocol defines it.
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[:len(v)-1], 10, 64)
	if err != nil || v[0] == '+' {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	// 99999999H overflows a Duration: that is as good as no deadline.
	if unit > time.Second && n > uint64(1<<63-1)/uint64(unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// grpcMessage percent-encodes s for grpc-message: every byte outside
// printable ASCII, and '%'.
func grpcMessage(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
