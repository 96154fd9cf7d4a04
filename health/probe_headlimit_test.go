package health

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// An instance whose response head is over the proxy's limit fails its probe:
// the proxy would answer 502 to every request it sent there.
func TestProbeResponseHeadLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		ok   bool
	}{{"small head", 1 << 10, true}, {"head over the limit", MaxResponseHeaderBytes + 4096, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Big: "+strings.Repeat("b", tc.size)+"\r\n\r\n")
			}()
			r := NewProber(nil).Probe(context.Background(), Target{Kind: KindHTTP, URL: "http://" + ln.Addr().String() + "/", Timeout: 5 * time.Second})
			if r.OK != tc.ok {
				t.Fatalf("probe OK %v (%s), want %v", r.OK, r.Message, tc.ok)
			}
		})
	}
}
