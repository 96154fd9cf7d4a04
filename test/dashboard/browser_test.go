// Package dashboard tests what operators see, end to end, against the real binaries
// (slugway controller and slugway proxy as processes, a real kube-apiserver and etcd,
// real backends): the proxy's dashboard in a real headless Chromium, and the traces
// both processes export to a real OTLP receiver.
package dashboard

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/test/harness"
)

var (
	c        *harness.Cluster
	chromium string // the browser's path; "" when it cannot be had (the tests skip)
	why      string // why not
)

func TestMain(m *testing.M) {
	chromium, why = findChromium() // without it the browser test skips, saying why
	harness.Main(m, &c)
}

// findChromium returns SLUGWAY_CHROMIUM, or Debian's chromium from PATH.
func findChromium() (path, why string) {
	if p := os.Getenv("SLUGWAY_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Sprintf("SLUGWAY_CHROMIUM=%s: %v", p, err)
		}
		return p, ""
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, ""
		}
	}
	return "", "no Chromium: install Debian's chromium package (apt-get install chromium; .ci/run does when it is missing) or point SLUGWAY_CHROMIUM at a Chromium binary"
}

// backend is an instance process stand-in: it answers its health check and
// /<slug>/ok with 200, /<slug>/fail with 500, and can be killed.
type backend struct {
	srv *http.Server
	ln  net.Listener
	url string
}

func newBackend(t *testing.T, name string) *backend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/{slug}/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) })
	mux.HandleFunc("/{slug}/fail", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "failing on purpose", 500) })
	b := &backend{srv: &http.Server{Handler: mux}, ln: ln, url: "http://" + ln.Addr().String()}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(b.kill)
	return b
}

// kill stops the backend at once: its listener and every connection close.
func (b *backend) kill() { _ = b.srv.Close() }

func createSlug(t *testing.T, slug, display, owner string) {
	t.Helper()
	sa := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: slugwayv1.ServiceAccountSpec{DisplayName: display, Owner: owner}}
	if err := c.Env.Client.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Env.Client.Delete(context.Background(), sa) })
}

// createInstance registers url for slug with a fast health check (every second,
// Unreachable after one failure), so the test sees a death within seconds.
func createInstance(t *testing.T, slug, name, url string) {
	t.Helper()
	inst := &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: slugwayv1.InstanceSpec{Slug: slug, URL: url, HealthCheck: slugwayv1.HealthCheck{
			Interval: &metav1.Duration{Duration: time.Second}, Timeout: &metav1.Duration{Duration: 500 * time.Millisecond},
			UnhealthyThreshold: 1,
		}},
	}
	if err := c.Env.Client.Create(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Env.Client.Delete(context.Background(), inst) })
}

// browser starts a fresh headless Chromium (its own profile, no network
// features) and returns a context for driving one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], // --headless, --no-first-run, --disable-background-networking, --disable-sync, ...
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1500, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser; it lives as long as ctx
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return ctx
}

// js evaluates expr in the page and returns its string value.
func js(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return s
}

// waitJS polls expr every 100ms until it returns want, and returns how long that took.
func waitJS(t *testing.T, ctx context.Context, what, expr, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got string
	for time.Since(start) < timeout {
		if got = js(t, ctx, expr); got == want {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: the page shows %q, not %q, after %s", what, got, want, timeout)
	return 0
}

func cell(sel, field string) string {
	return fmt.Sprintf(`(document.querySelector(%q)?.%s ?? "missing")`, sel, field)
}

func TestDashboardInChromium(t *testing.T) {
	if chromium == "" {
		t.Skip(why)
	}
	// The harness proxy runs without the dashboard: restart it with it.
	if err := c.Proxy.Stop(10 * time.Second); err != nil {
		t.Logf("stopping the first proxy: %v", err)
	}
	if err := c.StartProxy("--dashboard"); err != nil {
		t.Fatal(err)
	}

	// A few slugs, as a team would have them; dash-demo has two instances.
	b1, b2 := newBackend(t, "b1"), newBackend(t, "b2")
	createSlug(t, "dash-demo", "Dashboard Demo", "team-a")
	createInstance(t, "dash-demo", "dash-demo-1", b1.url)
	createInstance(t, "dash-demo", "dash-demo-2", b2.url)
	for i, s := range []struct{ slug, display, owner string }{
		{"orders", "Orders API", "team-shop"}, {"search", "Search", "team-find"}, {"billing", "Billing", "team-money"},
	} {
		b := newBackend(t, s.slug)
		createSlug(t, s.slug, s.display, s.owner)
		createInstance(t, s.slug, s.slug+"-"+strconv.Itoa(i), b.url)
	}
	// dash-demo gets no request before the counted ones below: the page tells when it is routable.
	harness.Eventually(t, 30*time.Second, func() error {
		for _, u := range []string{"/orders/ok", "/search/ok", "/billing/ok"} {
			if code, body, err := harness.Get(c.ProxyURL + u); err != nil || code != 200 {
				return fmt.Errorf("GET %s: %d %s %v", u, code, body, err)
			}
		}
		return nil
	})
	// Background traffic for the other slugs' sparklines: orders ~20/s, search ~5/s with some 404s.
	bg, stopBG := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { stopBG(); <-done })
	go func() {
		defer close(done)
		for i := 0; bg.Err() == nil; i++ {
			_, _, _ = harness.Get(c.ProxyURL + "/orders/ok")
			if i%4 == 0 {
				_, _, _ = harness.Get(c.ProxyURL + "/search/ok")
			}
			if i%20 == 0 {
				_, _, _ = harness.Get(c.ProxyURL + "/search/nope")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(c.AdminURL+"/dashboard/")); err != nil {
		t.Fatal(err)
	}
	// A marker that a reload would lose: every later check runs on this same page.
	js(t, ctx, `window.loadMarker = "same page"; window.loadMarker`)

	// 1. The slug and its instances appear.
	row := `tr[data-slug="dash-demo"]`
	waitJS(t, ctx, "the slug's row", cell(row+" td.display", "textContent"), "Dashboard Demo", 15*time.Second)
	if got := js(t, ctx, cell(row+" td.owner", "textContent")); got != "team-a" {
		t.Errorf("owner cell %q, want team-a", got)
	}
	waitJS(t, ctx, "the slug's routable/total", cell(row+" td.routable", "textContent"), "2/2", 15*time.Second)
	// Search narrows the list to the slug.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#q"), "dash")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "search for dash", `String(document.querySelectorAll("tr.slug").length)`, "1", 5*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+" td.name"))); err != nil {
		t.Fatal(err)
	}
	inst1, inst2 := `tr[data-instance="default/dash-demo-1"]`, `tr[data-instance="default/dash-demo-2"]`
	waitJS(t, ctx, "instance 1's status", cell(inst1+" td.status", "textContent"), "Healthy", 15*time.Second)
	waitJS(t, ctx, "instance 2's status", cell(inst2+" td.status", "textContent"), "Healthy", 15*time.Second)
	if got := js(t, ctx, cell(inst1+" td.url", "textContent")); got != b1.url {
		t.Errorf("instance 1's URL cell %q, want %q", got, b1.url)
	}

	// 2. Traffic sent now shows up in the rates: 300 OK, 30 failing with 500,
	// 20 for a path the instance does not have (404).
	send := func(path string, n, want int) {
		for range n {
			code, body, err := harness.Get(c.ProxyURL + path)
			if err != nil || code != want {
				t.Fatalf("GET %s: %d %s %v, want %d", path, code, body, err, want)
			}
		}
	}
	send("/dash-demo/ok", 300, 200)
	send("/dash-demo/fail", 30, 500)
	send("/dash-demo/missing", 20, 404)
	took := waitJS(t, ctx, "requests counted", cell(row+" td.rate", "dataset.requests"), "350", 5*time.Second)
	t.Logf("traffic on the page %s after the last request", took.Round(time.Millisecond))
	for sel, want := range map[string]string{"td.rate": "5.8", "td.rate5xx": "0.50", "td.rate4xx": "0.33"} { // per second over 60s
		if got := js(t, ctx, cell(row+" "+sel, "textContent")); got != want {
			t.Errorf("%s shows %q, want %q", sel, got, want)
		}
	}
	if got := js(t, ctx, cell(row+" td.p50", "textContent")); got == "–" || got == "missing" {
		t.Errorf("p50 shows %q after 350 requests", got)
	}
	if got := js(t, ctx, `String(document.querySelector('tr[data-slug="dash-demo"] svg.spark polyline')?.getAttribute("points").split(" ").length)`); got != "60" {
		t.Errorf("the sparkline has %s points, want one per second of the last minute", got)
	}

	// 3. A killed instance turns Unreachable, without a reload.
	b1.kill()
	took = waitJS(t, ctx, "the killed instance's status", cell(inst1+" td.status", "textContent"), "Unreachable", 10*time.Second)
	t.Logf("killed instance shown Unreachable %s after the kill", took.Round(time.Millisecond))
	waitJS(t, ctx, "routable after the kill", cell(row+" td.routable", "textContent"), "1/2", 5*time.Second)
	if got := js(t, ctx, cell(inst2+" td.status", "textContent")); got != "Healthy" {
		t.Errorf("the surviving instance shows %q", got)
	}
	if got := js(t, ctx, `window.loadMarker ?? "reloaded"`); got != "same page" {
		t.Fatalf("the page was reloaded (%q): it must update in place", got)
	}

	// The screenshot: all slugs, dash-demo open.
	js(t, ctx, `const q = document.getElementById("q"); q.value = ""; q.dispatchEvent(new Event("input")); ""`)
	waitJS(t, ctx, "all slugs back", `String(document.querySelectorAll("tr.slug").length >= 4)`, "true", 5*time.Second)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("SLUGWAY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testenv.Root(), ".artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(png))
}
