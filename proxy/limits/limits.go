// Package limits holds the proxy's resource limits that are not a server
// setting: a cap on connections per instance, and an idle timeout between the
// reads of a streamed request body. (The cap on client connections is
// golang.org/x/net/netutil.LimitListener; header sizes and counts are the
// servers'.)
package limits

import (
	"io"
	"sync/atomic"
	"time"
)

// Cap bounds how many connections (or requests in flight) one instance gets.
// The zero value, or a Cap with Max 0, has no limit.
type Cap struct {
	Max  int64
	used atomic.Int64
}

// Acquire takes one unit; it reports false (take nothing) when Max are in use.
func (c *Cap) Acquire() bool {
	if c == nil || c.Max <= 0 {
		return true
	}
	if c.used.Add(1) > c.Max {
		c.used.Add(-1)
		return false
	}
	return true
}

// Release gives back a unit taken by a successful Acquire.
func (c *Cap) Release() {
	if c == nil || c.Max <= 0 {
		return
	}
	c.used.Add(-1)
}

// InUse is how many units are taken.
func (c *Cap) InUse() int64 {
	if c == nil {
		return 0
	}
	return c.used.Load()
}

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
	return r.R.Read(p)
}
