package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy"
)

// killableServer is a backend whose process can "die": its listener and every
// open connection close at once, requests in flight included.
type killableServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newKillable(t *testing.T, name string) *killableServer {
	k := &killableServer{}
	k.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.hits.Add(1)
		time.Sleep(time.Millisecond) // keep some requests in flight when it dies
		fmt.Fprint(w, name)
	}))
	t.Cleanup(k.Close)
	return k
}

func (k *killableServer) kill() {
	k.Listener.Close()
	k.CloseClientConnections()
}

func TestFailoverZeroErrors(t *testing.T) {
	createSlug(t, "failover")
	var backends []*killableServer
	for i := range 3 {
		b := newKillable(t, fmt.Sprint("b", i))
		backends = append(backends, b)
		createInstance(t, "failover", fmt.Sprint("failover-", i), b.URL, slugwayv1.HealthHealthy, "")
	}
	p := startProxy(t, proxy.Options{})
	waitRoute(t, p, "failover", 3)
	url := "http://" + p.Addr() + "/failover/x"

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := 0; i < 5000 && ctx.Err() == nil; i++ {
				resp, err := client1.Get(url)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	waitFor := func(n int64) {
		for ok.Load() < n && failed.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(300)
	backends[1].kill() // the instance dies; its status still says Healthy
	killedAt := ok.Load()
	waitFor(killedAt + 1500)
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed after killing 1 of 3 instances; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	after := backends[1].hits.Load()
	t.Logf("%d requests, all OK; killed instance had served %d; survivors %d and %d",
		ok.Load(), after, backends[0].hits.Load(), backends[2].hits.Load())
	if backends[0].hits.Load() == 0 || backends[2].hits.Load() == 0 {
		t.Error("load was not spread over the surviving instances")
	}
	m := metricsText(t, p)
	if !strings.Contains(m, `slugway_proxy_ejections_total{slug="failover"}`) {
		t.Errorf("no ejection recorded:\n%s", grep(m, "failover"))
	}
}

func TestNonIdempotentNeverReplayed(t *testing.T) {
	// Each instance reads the request, then breaks the connection without answering.
	var hits atomic.Int64
	breaker := func() *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST
				}
				c.Close()
			}
		}))
		t.Cleanup(s.Close)
		return s
	}
	createSlug(t, "replay")
	for i := range 3 {
		createInstance(t, "replay", fmt.Sprint("replay-", i), breaker().URL, slugwayv1.HealthHealthy, "")
	}
	p := startProxy(t, proxy.Options{EjectBase: time.Millisecond, EjectMax: time.Millisecond})
	waitRoute(t, p, "replay", 3)
	url := "http://" + p.Addr() + "/replay/x"

	resp, err := client1.Post(url, "text/plain", strings.NewReader("pay once"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || hits.Load() != 1 {
		t.Fatalf("POST: status %d after %d deliveries; want 502 after exactly 1", resp.StatusCode, hits.Load())
	}
	hits.Store(0)
	resp, err = client1.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || hits.Load() != 3 {
		t.Fatalf("GET: status %d after %d deliveries; want 502 after 3 (1 + 2 retries)", resp.StatusCode, hits.Load())
	}
}

func metricsText(t testing.TB, p *proxy.Proxy) string {
	t.Helper()
	resp, err := client1.Get("http://" + p.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitMetrics waits until the proxy's metrics hold every want (a request is
// recorded after its response went out, so a client may read it first).
func waitMetrics(t testing.TB, p *proxy.Proxy, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := metricsText(t, p)
		missing := ""
		for _, w := range wants {
			if !strings.Contains(m, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q after 10 s:\n%s", missing, grep(m, "slugway_proxy"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
