// Package faults proves that slugway survives what production does to it: an apiserver
// that goes away, a controller killed mid-work, a leader that dies, a proxy restarted
// under load, and backends that hang, reset or crawl. Every process is real.
package faults

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/test/harness"
)

var c *harness.Cluster

func TestMain(m *testing.M) { harness.Main(m, &c) }

// register claims slug as admin and creates one Instance per URL with a fast health check.
func register(t *testing.T, slug string, hc string, urls ...string) {
	t.Helper()
	manifest := fmt.Sprintf("apiVersion: slugway.io/v1alpha1\nkind: ServiceAccount\nmetadata:\n  name: %s\n", slug)
	for i, u := range urls {
		manifest += fmt.Sprintf(`---
apiVersion: slugway.io/v1alpha1
kind: Instance
metadata:
  name: %s-%d
  namespace: default
spec:
  slug: %s
  url: %s
  healthCheck:
%s
`, slug, i, slug, u, indent(hc))
	}
	// A previous test may have just restarted the controller that serves the webhooks.
	harness.Eventually(t, 60*time.Second, func() error {
		if out, err := c.KubectlIn("root", manifest, "apply", "-f", "-"); err != nil {
			return fmt.Errorf("kubectl apply: %v\n%s", err, out)
		}
		return nil
	})
	c.ReleaseAtCleanup(t, slug)
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString("    " + strings.TrimSpace(l) + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

const fastHC = "interval: 1s\ntimeout: 500ms"

// proxyResync bounds how long the proxy's watch may lag the apiserver. After the
// apiserver was down for a while (TestAPIServerDown30s), client-go's reflectors retry
// at a backoff that ends in a [30 s, 60 s) interval, so the proxy may list again only
// up to a minute after the apiserver is back; each informer (Instances,
// ServiceAccounts) backs off on its own.
const proxyResync = 90 * time.Second

// waitHealthy waits until n instances of slug are Healthy, and the proxy routes to them.
func waitHealthy(t *testing.T, slug string, n int, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, func() error {
		got := 0
		for _, r := range c.KubectlTable(t, "admin", "instances", "-n", "default") {
			if r["OWNER SLUG"] == slug && r["STATUS"] == "Healthy" {
				got++
			}
		}
		if got != n {
			return fmt.Errorf("%d of %d %s instances Healthy", got, n, slug)
		}
		return nil
	})
	waitRouted(t, slug, n)
}

// waitRouted waits until the proxy's route table sends slug's traffic to n instances.
func waitRouted(t *testing.T, slug string, n int) {
	t.Helper()
	want := fmt.Sprintf("slugway_proxy_routable_endpoints{slug=%q} %d\n", slug, n)
	harness.Eventually(t, proxyResync, func() error {
		_, body, err := harness.Get(c.AdminURL + "/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(body, want) {
			return fmt.Errorf("the proxy does not route %d %s instances yet", n, slug)
		}
		return nil
	})
}

func okServer(t *testing.T, body string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			time.Sleep(1500 * time.Millisecond)
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func instances(t *testing.T) []slugwayv1.Instance {
	t.Helper()
	var list slugwayv1.InstanceList
	if err := c.Env.Client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

var _ = metav1.Now
