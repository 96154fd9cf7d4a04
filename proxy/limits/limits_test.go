package limits_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slugway/slugway/proxy/limits"
)

func TestCap(t *testing.T) {
	c := &limits.Cap{Max: 2}
	if !c.Acquire() || !c.Acquire() {
		t.Fatal("the first two must fit")
	}
	if c.Acquire() {
		t.Fatal("a third got in over Max 2")
	}
	c.Release()
	if !c.Acquire() || c.InUse() != 2 {
		t.Fatalf("after a release: in use %d", c.InUse())
	}
	var unlimited *limits.Cap
	if !unlimited.Acquire() || !(&limits.Cap{}).Acquire() {
		t.Fatal("nil and Max 0 are unlimited")
	}
}

func TestCapConcurrent(t *testing.T) {
	c := &limits.Cap{Max: 5}
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak, in := int64(0), int64(0)
	for i := 0; i < 50; i++ {
		wg.Go(func() {
			for j := 0; j < 200; j++ {
				if !c.Acquire() {
					continue
				}
				mu.Lock()
				in++
				peak = max(peak, in)
				mu.Unlock()
				mu.Lock()
				in--
				mu.Unlock()
				c.Release()
			}
		})
	}
	wg.Wait()
	if peak > 5 || c.InUse() != 0 {
		t.Fatalf("peak %d (Max 5), in use at the end %d", peak, c.InUse())
	}
}

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
	if len(deadlines) != 3 {
		t.Fatalf("%d deadlines for 3 reads", len(deadlines))
	}
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
