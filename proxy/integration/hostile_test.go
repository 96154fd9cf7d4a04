package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/hostile"
	"github.com/slugway/slugway/proxy"
)

// The raw-bytes hostile-input table (internal/hostile, issue #13): each case
// is sent as raw bytes through both of slugway's HTTP/1.1 servers, the fast
// front end and net/http, to a raw TCP instance that records what reached
// it. The answer, the connection's close where the RFC asks for it, and that
// nothing more than allowed reached the instance are asserted per case. The
// same cases through nginx and HAProxy: hack/hostile-compare.sh; the results
// side by side: docs/security.md.
func TestHostileInput(t *testing.T) {
	in, err := hostile.NewInstance()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close() })
	createSlug(t, hostile.Slug)
	createInstance(t, hostile.Slug, "hostile-1", "http://"+in.Addr(), slugwayv1.HealthHealthy, "")

	for _, server := range []struct {
		name string
		opts proxy.Options
	}{
		{"front end", proxy.Options{}},
		{"net/http", proxy.Options{NetHTTPOnly: true}},
	} {
		t.Run(server.name, func(t *testing.T) {
			p := startProxy(t, server.opts)
			waitRoute(t, p, hostile.Slug, 1)
			for _, c := range hostile.Cases() {
				r, err := hostile.Run(p.Addr(), c, in, 500*time.Millisecond)
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				t.Logf("| %s | %s | %s |", server.name, c.Name, r.Summary(c))
				if bad := c.Check(r); bad != "" {
					t.Errorf("%s: %s", c.Name, bad)
				}
			}
		})
	}
}

// --max-client-conns: with one connection open, a second one is not served
// until the first closes; then it is.
func TestMaxClientConns(t *testing.T) {
	in, err := hostile.NewInstance()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close() })
	createSlug(t, "capped")
	createInstance(t, "capped", "capped-1", "http://"+in.Addr(), slugwayv1.HealthHealthy, "")
	for _, server := range []struct {
		name string
		opts proxy.Options
	}{{"front end", proxy.Options{MaxClientConns: 1}}, {"net/http", proxy.Options{MaxClientConns: 1, NetHTTPOnly: true}}} {
		t.Run(server.name, func(t *testing.T) {
			p := startProxy(t, server.opts)
			waitRoute(t, p, "capped", 1)
			first, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			// The first connection is served (and stays open, idle).
			if _, err := io.WriteString(first, "GET /capped/1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(first)
			if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("first connection: %v %v", resp, err)
			}
			second, err := net.Dial("tcp", p.Addr()) // the kernel accepts it into the backlog
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			if _, err := io.WriteString(second, "GET /capped/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			_ = second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := second.Read(make([]byte, 1)); err == nil {
				t.Fatal("the second connection was served while the first held the only slot")
			}
			first.Close() // frees the slot
			_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(second), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("second connection after the first closed: %v %v", resp, err)
			}
			resp.Body.Close()
		})
	}
}
