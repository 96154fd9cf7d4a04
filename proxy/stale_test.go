package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// restartableOrigin is an instance on a fixed address that can be stopped and
// started again there, counting its open connections.
type restartableOrigin struct {
	t    *testing.T
	addr string
	idle time.Duration // its keep-alive idle timeout (0: net/http's default)
	open atomic.Int32
	srv  *http.Server
}

func newRestartableOrigin(t *testing.T, idle time.Duration) *restartableOrigin {
	o := &restartableOrigin{t: t, addr: "127.0.0.1:0", idle: idle}
	o.start()
	t.Cleanup(o.stop)
	return o
}

func (o *restartableOrigin) start() {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		o.t.Fatalf("listening again on %s: %v", o.addr, err)
	}
	o.addr = ln.Addr().String()
	o.srv = &http.Server{
		IdleTimeout: o.idle,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			_, _ = fmt.Fprintf(w, "%s %d", r.Method, len(b))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				o.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				o.open.Add(-1)
			}
		},
	}
	go func() { _ = o.srv.Serve(ln) }()
}

// stop closes the listener and every connection, as a process that exits does.
func (o *restartableOrigin) stop() { _ = o.srv.Close() }

// waitClosed waits until the instance has closed every connection (it closes
// them itself: the proxy's pooled ends are then in CLOSE-WAIT).
func (o *restartableOrigin) waitClosed() {
	o.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for o.open.Load() != 0 {
		if time.Now().After(deadline) {
			o.t.Fatalf("the instance still has %d connections open", o.open.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// load sends requests on 64 connections at once, so that the proxy pools up to
// 64 connections to the instance.
func load(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 64 {
		wg.Go(func() {
			for range 10 {
				resp, err := c.Get(url + "/s/load")
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of 640 load requests failed", n)
	}
}

// sequential sends 100 GETs, then 100 POSTs with bodies, one at a time on one
// client connection, and fails unless all 200 succeed.
func sequential(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	ok := map[string]int{}
	var first string
	for _, method := range []string{"GET", "POST"} {
		for i := range 100 {
			var body io.Reader
			want := method + " 0"
			if method == "POST" {
				b := strings.Repeat("x", 100+i)
				body, want = strings.NewReader(b), fmt.Sprintf("POST %d", len(b))
			}
			req, _ := http.NewRequestWithContext(context.Background(), method, url+"/s/seq", body)
			resp, err := c.Do(req)
			if err != nil {
				if first == "" {
					first = err.Error()
				}
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) == want {
				ok[method]++
			} else if first == "" {
				first = fmt.Sprintf("%d %s", resp.StatusCode, b)
			}
		}
	}
	t.Logf("%d of 100 GETs and %d of 100 POSTs succeeded", ok["GET"], ok["POST"])
	if ok["GET"] != 100 || ok["POST"] != 100 {
		t.Fatalf("%d of 100 GETs and %d of 100 POSTs succeeded; the first failure: %s", ok["GET"], ok["POST"], first)
	}
}

// TestRestartedInstanceOnTheSameAddress: after load, the only instance of a slug
// restarts on the same address. The proxy's pooled connections to it are all
// dead; no request may fail because of them.
func TestRestartedInstanceOnTheSameAddress(t *testing.T) {
	bothServers(t, func(t *testing.T, serve func(testing.TB, *Handler) string) {
		o := newRestartableOrigin(t, 0)
		h := NewHandler(Options{})
		h.SetTable(table("s", "http://"+o.addr))
		url := serve(t, h)
		load(t, url)
		o.stop()
		o.waitClosed()
		o.start()
		sequential(t, url)
		if n := ejections(t, h); n != 0 {
			t.Errorf("%v ejections of an instance that only restarted", n)
		}
	})
}

// TestInstanceClosesIdleConnections: after load, an instance whose keep-alive
// idle timeout is 1 s closes the proxy's pooled connections; no request may
// fail because of them.
func TestInstanceClosesIdleConnections(t *testing.T) {
	bothServers(t, func(t *testing.T, serve func(testing.TB, *Handler) string) {
		o := newRestartableOrigin(t, time.Second)
		h := NewHandler(Options{})
		h.SetTable(table("s", "http://"+o.addr))
		url := serve(t, h)
		load(t, url)
		o.waitClosed()
		sequential(t, url)
	})
}

// TestRefusingInstanceIsEjected: stale-connection retries do not hide an
// instance that refuses new connections: it is still ejected, and requests go
// to the other instance.
func TestRefusingInstanceIsEjected(t *testing.T) {
	bothServers(t, func(t *testing.T, serve func(testing.TB, *Handler) string) {
		a := newRestartableOrigin(t, 0)
		b := newRestartableOrigin(t, 0)
		h := NewHandler(Options{})
		h.SetTable(table("s", "http://"+a.addr, "http://"+b.addr))
		url := serve(t, h)
		load(t, url)
		a.stop() // its pooled connections die and new ones are refused
		a.waitClosed()
		sequential(t, url)
		if n := ejections(t, h); n == 0 {
			t.Error("the instance that refuses connections was never ejected")
		}
	})
}

func ejections(t *testing.T, h *Handler) float64 {
	t.Helper()
	mfs, err := h.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "slugway_proxy_ejections_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
