// Package tarpit is a TCP listener for tests of the prober's fairness: it accepts
// connections and never answers, so every HTTP probe of it holds its worker for the
// probe's whole timeout, and it counts how many connections it holds at once.
package tarpit

import (
	"net"
	"sync"
	"testing"
)

// Tarpit is a listener on 127.0.0.1 that holds every connection until the client hangs up.
type Tarpit struct {
	ln         net.Listener
	mu         sync.Mutex
	open, peak int
}

// New starts a tarpit on a free loopback port; it is closed when t ends.
func New(t testing.TB) *Tarpit {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &Tarpit{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.open++
			tp.peak = max(tp.peak, tp.open)
			tp.mu.Unlock()
			go func() {
				_, _ = c.Read(make([]byte, 4096)) // the request
				_, _ = c.Read(make([]byte, 1))    // until the prober gives up
				_ = c.Close()
				tp.mu.Lock()
				tp.open--
				tp.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return tp
}

// Addr is the tarpit's host:port.
func (tp *Tarpit) Addr() string { return tp.ln.Addr().String() }

// Counts returns the connections held now and the most held at once so far.
func (tp *Tarpit) Counts() (open, peak int) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.open, tp.peak
}
