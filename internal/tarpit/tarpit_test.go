package tarpit

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// waitCounts waits until the tarpit holds want connections (it notices them on its own
// goroutines), failing after a minute.
func waitCounts(t *testing.T, tp *Tarpit, want int) {
	t.Helper()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if open, _ := tp.Counts(); open == want {
			return
		}
	}
	open, _ := tp.Counts()
	t.Fatalf("the tarpit holds %d connections, want %d", open, want)
}

// A tarpit holds each connection, sending nothing, until the client closes it, and
// counts those it holds now and at most.
func TestTarpitHoldsAndCounts(t *testing.T) {
	tp := New(t)
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", tp.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitCounts(t, tp, 3)
	// It answers nothing, even after the request: the read times out, with no byte.
	_ = conns[0].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := conns[0].Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes (%v) from the tarpit, want none and a timeout", n, err)
	}
	for _, c := range conns[:2] {
		_ = c.Close()
	}
	waitCounts(t, tp, 1)
	if _, peak := tp.Counts(); peak != 3 {
		t.Errorf("peak %d, want 3", peak)
	}
}
