package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// --max-conns-per-instance: a request finding every instance at the cap is
// answered 503 with Retry-After, and never reaches an instance.
func TestMaxConnsPerInstance(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		arrived, release := make(chan struct{}, 4), make(chan struct{})
		be, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-release
			_, _ = io.WriteString(w, "ok")
		})
		h := NewHandler(Options{MaxConnsPerInstance: 1})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		first := make(chan int, 1)
		go func() {
			resp, err := http.Get(url + "/s/a")
			if err != nil {
				first <- 0
				return
			}
			resp.Body.Close()
			first <- resp.StatusCode
		}()
		<-arrived
		// Without the cap this request would wait on the busy instance: the timeout fails it.
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url + "/s/b")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("over the cap: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		close(release)
		if code := <-first; code != 200 {
			t.Errorf("the request within the cap: %d", code)
		}
		select {
		case <-arrived:
			t.Error("the request over the cap reached the instance")
		default:
		}
	})
}

// --max-header-count: more header fields than allowed is 431 on both servers.
func TestMaxHeaderCount(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		be, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
		h := NewHandler(Options{MaxHeaderCount: 8})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		for _, n := range []int{3, 20} {
			req, _ := http.NewRequest("GET", url+"/s/a", nil)
			for i := range n {
				req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[int]int{3: 200, 20: 431}[n]; resp.StatusCode != want {
				t.Errorf("%d fields: %d, want %d", n, resp.StatusCode, want)
			}
		}
	})
}

// --allowed-upgrades: an upgrade to a protocol not named (and h2c always) is
// forwarded as a plain request without Upgrade, and HTTP2-Settings never
// reaches an instance; a named one keeps its Upgrade.
func TestAllowedUpgrades(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		var mu sync.Mutex
		var got []string
		be, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got = append(got, r.Header.Get("Upgrade")+"|"+r.Header.Get("Http2-Settings"))
			mu.Unlock()
			_, _ = io.WriteString(w, "ok")
		})
		h := NewHandler(Options{AllowedUpgrades: []string{"websocket", "x-allowed"}})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		for _, up := range []string{"h2c", "x-other", "x-allowed"} {
			req, _ := http.NewRequest("GET", url+"/s/a", nil)
			req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
			req.Header.Set("Upgrade", up)
			req.Header.Set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("Upgrade: %s: %d", up, resp.StatusCode)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"|", "|", "x-allowed|"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("the instance saw Upgrade|HTTP2-Settings %q, want %q", got, want)
		}
	})
}

// --body-idle-timeout: a streamed body that stops arriving is cut at the
// timeout, so it does not hold the instance's connection.
func TestBodyIdleTimeout(t *testing.T) {
	bothServers(t, func(t *testing.T, behindServer func(testing.TB, *Handler) string) {
		broke := make(chan error, 1)
		be, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			_, err := io.Copy(io.Discard, r.Body)
			broke <- err
		})
		h := NewHandler(Options{BodyIdleTimeout: 200 * time.Millisecond})
		h.SetTable(table("s", be.URL))
		url := behindServer(t, h)
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /s/a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("b", 100<<10))
		// The client stalls with most of its body unsent (and keeps the connection).
		select {
		case err := <-broke:
			if err == nil {
				t.Fatal("the instance read a complete body")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the stalled body still holds the instance's connection after 20s (idle timeout 200ms)")
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("answered %d to a body that stalled", resp.StatusCode)
			}
		}
	})
}

// A streamed body's read deadline is set through a handlerDeadline: the
// upstream Transport's body writer reads the client's body in a goroutine of
// its own and may do so after ServeHTTP returned, when net/http's HTTP/2
// ResponseWriter panics on SetReadDeadline (a panic outside the handler, so the
// whole proxy goes down; seen in CI). Once ended, set refuses instead.
func TestHandlerDeadlineAfterTheHandlerReturned(t *testing.T) {
	got := make(chan *handlerDeadline, 1)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dl := &handlerDeadline{rc: http.NewResponseController(w)}
		defer dl.end()
		if err := dl.set(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("set while the handler runs: %v", err)
		}
		got <- dl
	})}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Transport: &http.Transport{Protocols: &p}}
	resp, err := client.Post("http://"+l.Addr().String()+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("the test needs HTTP/2, got %s", resp.Proto)
	}
	dl := <-got
	time.Sleep(50 * time.Millisecond) // the server's side of the handler's end
	if err := dl.set(time.Now().Add(time.Minute)); err == nil {
		t.Error("set after the handler returned: no error")
	}
}
