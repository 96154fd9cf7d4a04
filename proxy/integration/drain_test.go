package integration

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy"
)

// During the shutdown delay the proxy keeps serving, and each response closes its
// keep-alive connection (Connection: close), so that clients reconnect through the
// Service to a proxy that stays instead of racing the close of an idle connection with
// their next request (the failed requests of a rolling update under load).
func TestShutdownDelayEndsKeepAliveConnections(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	createSlug(t, "drain")
	createInstance(t, "drain", "drain-1", be.URL, slugwayv1.HealthHealthy, "")

	for _, netHTTP := range []bool{false, true} {
		name := "fast front end"
		if netHTTP {
			name = "net/http"
		}
		t.Run(name, func(t *testing.T) {
			o := proxy.Options{Listener: listen(t), AdminListener: listen(t), ShutdownDelay: 3 * time.Second, DrainTimeout: 5 * time.Second, NetHTTPOnly: netHTTP}
			p, err := proxy.New(env.Config, o)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			waitRoute(t, p, "drain", 1)

			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			roundTrip := func() *http.Response {
				t.Helper()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c, "GET /drain/x HTTP/1.1\r\nHost: p\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}
			if resp := roundTrip(); resp.StatusCode != 200 || resp.Close {
				t.Fatalf("before shutdown: %d, close=%v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
			}
			cancel()
			deadline := time.Now().Add(2 * time.Second)
			for p.Ready() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			// The kept-alive connection: answered, then ended by the proxy, cleanly.
			if resp := roundTrip(); resp.StatusCode != 200 || !resp.Close {
				t.Fatalf("during the shutdown delay: %d, close=%v; want 200 with Connection: close", resp.StatusCode, resp.Close)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after Connection: close the proxy should close the connection, read: %v", err)
			}
			// A new connection is still served during the delay, and ended the same way.
			resp, err := http.Get("http://" + p.Addr() + "/drain/x")
			if err != nil {
				t.Fatalf("a new connection during the shutdown delay: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || !resp.Close {
				t.Fatalf("new connection during the delay: %d, close=%v", resp.StatusCode, resp.Close)
			}
		})
	}
}
