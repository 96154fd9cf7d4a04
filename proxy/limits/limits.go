// Package limits holds the proxy's resource limits that are not a server
// setting: an idle timeout between the reads of a streamed request body. (The
// cap on client connections is golang.org/x/net/netutil.LimitListener, the one
// on connections per instance the balancer's count of requests in flight.)
package limits

import (
	"io"
	"time"
)

// IdleReader is a request body whose every Read must make progress within
// Idle: before each Read it moves the connection's read deadline Idle ahead
// (SetDeadline is http.ResponseController.SetReadDeadline, or a net.Conn's).
// So a client that trickles a large body, or stops sending it, cannot hold an
// instance's connection for longer than Idle without a byte.
type IdleReader struct {
	R           io.Reader
	Idle        time.Duration
	SetDeadline func(time.Time) error
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (r *IdleReader) Read(p []byte) (int, error) {
	if r.Idle > 0 && r.SetDeadline != nil {
		now := time.Now
		if r.Now != nil {
			now = r.Now
		}
		if err := r.SetDeadline(now().Add(r.Idle)); err != nil {
			return 0, err
		}
	}
	n, err := r.R.Read(p)
	if err != nil && r.Idle > 0 && r.SetDeadline != nil {
		// The body ended (or broke): the connection is back to its server's
		// own deadlines, so a long response is not cut at Idle.
		_ = r.SetDeadline(time.Time{})
	}
	return n, err
}
