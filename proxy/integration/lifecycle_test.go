package integration

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy"
	"github.com/slugway/slugway/proxy/routes"
)

func status(t testing.TB, url string) int {
	t.Helper()
	resp, err := client1.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestRoutePropagation: a status change reaches routing through the watch, and
// Degraded instances are used only while no instance is Healthy.
func TestRoutePropagation(t *testing.T) {
	healthyBE, degradedBE := protoServer(t), httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "slow") }))
	t.Cleanup(degradedBE.Close)
	createSlug(t, "prop")
	h := createInstance(t, "prop", "prop-h", healthyBE.URL, slugwayv1.HealthHealthy, "")
	createInstance(t, "prop", "prop-d", degradedBE.URL, slugwayv1.HealthDegraded, "")
	p := startProxy(t, proxy.Options{})
	waitRoute(t, p, "prop", 1)
	url := "http://" + p.Addr() + "/prop/x"
	body := func() string {
		resp, err := client1.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for range 20 {
		if b := body(); b != "ok" {
			t.Fatalf("with a Healthy instance, a Degraded one answered: %q", b)
		}
	}
	for _, step := range []struct {
		health slugwayv1.Health
		want   string
	}{
		{slugwayv1.HealthUnreachable, "slow"}, // only the Degraded one is left
		{slugwayv1.HealthHealthy, "ok"},
	} {
		start := time.Now()
		setHealth(t, h, step.health)
		for body() != step.want {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("after %s, routing did not change within 5s", step.health)
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Logf("status %s reached routing %v after the API write", step.health, time.Since(start))
	}
}

// BenchmarkRoutePropagation measures the time from an Instance status write (the
// watch event follows it) to the route table that reflects it serving requests.
// It reports p50 and p99; the target is p99 < 250ms.
func BenchmarkRoutePropagation(b *testing.B) {
	be := protoServer(&testing.T{})
	createSlug(b, "bench-prop")
	inst := createInstance(b, "bench-prop", "bench-prop-1", be.URL, slugwayv1.HealthHealthy, "")
	swapped := make(chan *routes.Table, 16)
	p := startProxy(b, proxy.Options{OnTableSwap: func(t *routes.Table) {
		select {
		case swapped <- t:
		default:
		}
	}})
	waitRoute(b, p, "bench-prop", 1)
	var lat []time.Duration
	next := slugwayv1.HealthUnreachable
	b.ResetTimer()
	for b.Loop() {
		for len(swapped) > 0 {
			<-swapped
		}
		start := time.Now()
		setHealth(b, inst, next)
		want := 0
		if next == slugwayv1.HealthHealthy {
			want = 1
		}
		for {
			t := <-swapped
			if r := t.Lookup("bench-prop"); r != nil && len(r.Endpoints) == want {
				break
			}
		}
		lat = append(lat, time.Since(start))
		if next == slugwayv1.HealthHealthy {
			next = slugwayv1.HealthUnreachable
		} else {
			next = slugwayv1.HealthHealthy
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}

func TestReadyzMetricsAndGracefulShutdown(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/life/slow" {
			close(arrived)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}))
	t.Cleanup(be.Close)
	createSlug(t, "life")
	createInstance(t, "life", "life-1", be.URL, slugwayv1.HealthHealthy, "")

	o := proxy.Options{Listener: listen(t), AdminListener: listen(t), DrainTimeout: 10 * time.Second}
	p, err := proxy.New(env.Config, o)
	if err != nil {
		t.Fatal(err)
	}
	admin := "http://" + p.AdminAddr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer cancel()
	for status(t, admin+"/readyz") != 200 {
		time.Sleep(5 * time.Millisecond)
	}
	// Ready means the table was built from synced caches: the slug is known at once.
	if c := status(t, "http://"+p.Addr()+"/life/x"); c != 200 {
		t.Fatalf("first request after /readyz: %d", c)
	}
	if c := status(t, admin+"/healthz"); c != 200 {
		t.Fatalf("/healthz %d", c)
	}
	// The proxy records a request after its response's last byte went out: the
	// client may read the response first, so wait for the sample.
	waitMetrics(t, p,
		`slugway_proxy_requests_total{code="200",slug="life"} 1`,
		`slugway_proxy_request_duration_seconds_count{slug="life"} 1`,
		`slugway_proxy_routable_endpoints{slug="life"} 1`,
		`slugway_proxy_route_table_builds_total`,
	)

	// A request in flight when shutdown starts completes; new connections are refused.
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + p.Addr() + "/life/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-arrived // in flight at the instance
	cancel()
	// Shutdown closes the listener while the request is still in flight.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections were still accepted 10 s into shutdown, with a request in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if b := <-got; b != "done" {
		t.Fatalf("in-flight request during shutdown: %q", b)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
