package limits_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slugway/slugway/proxy/limits"
)

// Every Read moves the deadline Idle past now, so only a gap without bytes
// longer than Idle ends the body, never its total length.
func TestIdleReaderMovesTheDeadline(t *testing.T) {
	now := time.Unix(1000, 0)
	var deadlines []time.Time
	r := &limits.IdleReader{R: strings.NewReader("abc"), Idle: time.Minute,
		SetDeadline: func(d time.Time) error { deadlines = append(deadlines, d); return nil },
		Now:         func() time.Time { now = now.Add(time.Hour); return now }}
	buf := make([]byte, 1)
	for i := 0; i < 3; i++ {
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Read(buf); err != io.EOF {
		t.Fatalf("after the body: %v", err)
	}
	if len(deadlines) != 5 || !deadlines[4].IsZero() {
		t.Fatalf("deadlines %v: want one per read, then none once the body ended", deadlines)
	}
	deadlines = deadlines[:3]
	for i, d := range deadlines {
		if want := time.Unix(1000, 0).Add(time.Duration(i+1)*time.Hour + time.Minute); !d.Equal(want) {
			t.Errorf("read %d: deadline %v, want %v (now + Idle)", i, d, want)
		}
	}
}

// A body that stops arriving fails at the idle timeout.
func TestIdleReaderStalledBody(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	r := &limits.IdleReader{R: b, Idle: 50 * time.Millisecond, SetDeadline: b.SetReadDeadline}
	go func() { _, _ = io.WriteString(a, "x") }()
	buf := make([]byte, 1)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled body: %v, want a deadline error", err)
	}
	plain := &limits.IdleReader{R: strings.NewReader("ab"), Idle: time.Second}
	if got, _ := io.ReadAll(plain); string(got) != "ab" {
		t.Fatalf("%q", got)
	}
}
