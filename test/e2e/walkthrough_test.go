package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slugway/slugway/test/harness"
)

// walkthroughReady waits for the walkthrough's end state: skeleton-svc registered,
// its instance Healthy, and the proxy routing to it. Tests that start from that
// state call it; none depends on another test having run first.
func walkthroughReady(t *testing.T) {
	t.Helper()
	harness.Eventually(t, 60*time.Second, func() error {
		code, body, err := harness.Get(c.ProxyURL + "/skeleton-svc/hello")
		if err != nil {
			return err
		}
		if code != http.StatusOK || strings.Join(strings.Fields(body), "") != `{"hello":"world"}` {
			return fmt.Errorf("HTTP %d %q", code, body)
		}
		row := harness.FindRow(c.KubectlTable(t, "admin", "instances", "-A"), "OWNER SLUG", "skeleton-svc")
		if row == nil || row["STATUS"] != "Healthy" {
			return fmt.Errorf("skeleton-svc's instance: %v", row)
		}
		return nil
	})
}

// The seed's walkthrough: skeleton-svc registers itself; the proxy routes to it; kubectl shows it.
func TestWalkthrough(t *testing.T) {
	walkthroughReady(t)
	rows := c.KubectlTable(t, "admin", "instances", "-A")
	row := harness.FindRow(rows, "OWNER SLUG", "skeleton-svc")
	if row == nil {
		t.Fatalf("no skeleton-svc instance in %v", rows)
	}
	for _, col := range []string{"NAMESPACE", "ID", "URL", "STATUS", "OWNER SLUG", "LAST HEARTBEAT", "AGE"} {
		if _, ok := row[col]; !ok {
			t.Errorf("column %s missing from kubectl get instances -A: %v", col, row)
		}
	}
	if row["URL"] != c.SkelURL || row["STATUS"] != "Healthy" || row["LAST HEARTBEAT"] == "" || row["LAST HEARTBEAT"] == "<none>" {
		t.Errorf("unexpected row: %v", row)
	}
	if testing.Verbose() {
		out, _ := c.KubectlAs("admin", "get", "instances", "-A")
		t.Logf("kubectl get instances -A:\n%s", out)
	}

	// The category lists both kinds, one table each.
	out, err := c.KubectlAs("admin", "get", "slugway")
	if err != nil {
		t.Fatalf("kubectl get slugway: %v\n%s", err, out)
	}
	var sa, inst map[string]string
	for _, block := range strings.Split(out, "\n\n") {
		rows := harness.ParseTable(block)
		sa = harness.FirstOf(sa, harness.FindRow(rows, "NAME", "serviceaccount.slugway.io/skeleton-svc"))
		inst = harness.FirstOf(inst, harness.FindRow(rows, "OWNER SLUG", "skeleton-svc"))
	}
	if sa == nil || inst == nil || sa["OWNER"] != "skeleton" || sa["DISPLAY NAME"] != "Skeleton Svc" || sa["HEALTHY"] != "1" {
		t.Errorf("kubectl get slugway should list the slug (owner skeleton, 1 healthy) and its instance:\n%s", out)
	}
}

const mallorysInstance = `apiVersion: slugway.io/v1alpha1
kind: Instance
metadata:
  name: hijack
  namespace: default
spec:
  slug: skeleton-svc
  url: http://127.0.0.1:1/
`

// A second identity cannot add, edit or delete the slug's instances; an admin can.
func TestOwnership(t *testing.T) {
	walkthroughReady(t) // the skeleton's instance must exist
	name := skeletonInstance(t)

	out, err := c.KubectlIn("mallory", mallorysInstance, "apply", "-f", "-")
	assertDenied(t, "apply", out, err)
	out, err = c.KubectlAs("mallory", "patch", "instance", name, "-n", "default", "--type=merge", "-p", `{"spec":{"url":"http://127.0.0.1:2/"}}`)
	assertDenied(t, "edit", out, err)
	out, err = c.KubectlAs("mallory", "delete", "instance", name, "-n", "default")
	assertDenied(t, "delete", out, err)

	// An admin-group member may.
	if out, err := c.KubectlAs("root", "label", "instance", name, "-n", "default", "reviewed=yes"); err != nil {
		t.Fatalf("admin denied: %v\n%s", err, out)
	}
	if out, err := c.KubectlIn("root", strings.Replace(mallorysInstance, "hijack", "admin-added", 1), "apply", "-f", "-"); err != nil {
		t.Fatalf("admin denied: %v\n%s", err, out)
	}
	if out, err := c.KubectlAs("root", "delete", "instance", "admin-added", "-n", "default"); err != nil {
		t.Fatalf("admin denied: %v\n%s", err, out)
	}
}

func assertDenied(t *testing.T, what, out string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("mallory's %s was allowed:\n%s", what, out)
	}
	want := `user "mallory" does not own slug "skeleton-svc" (owner "skeleton")`
	if !strings.Contains(out, want) {
		t.Fatalf("mallory's %s denied without saying why; want %q in:\n%s", what, want, out)
	}
	t.Logf("mallory's %s: %s", what, strings.TrimSpace(out))
}

func skeletonInstance(t *testing.T) string {
	t.Helper()
	row := harness.FindRow(c.KubectlTable(t, "admin", "instances", "-n", "default"), "OWNER SLUG", "skeleton-svc")
	if row == nil {
		t.Fatal("no skeleton-svc instance")
	}
	return row["ID"]
}

// kubectl apply of a ServiceAccount and an Instance makes the slug routable on the
// instance's first probe, which runs at once: the probe interval is an hour, so a
// controller that waited one interval, or a proxy that waited for a resync instead of
// watching, fails this. The time it took (within a second on an idle machine) is
// logged, not asserted: a loaded machine took 1.3s (-shuffle=1796171219792241618).
func TestDeclarativeRegistration(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "declared %s", r.URL.Path)
	}))
	t.Cleanup(backend.Close) // after the release below: cleanups run last first
	// The instance outlives neither its backend nor the test: TestControllerRestart
	// compares every instance's status across a restart, and with this backend gone it
	// would turn Unreachable in between (with -shuffle=1796171219792241618 it did).
	c.ReleaseAtCleanup(t, "declared")
	manifest := fmt.Sprintf(`apiVersion: slugway.io/v1alpha1
kind: ServiceAccount
metadata:
  name: declared
spec:
  displayName: Declared Svc
---
apiVersion: slugway.io/v1alpha1
kind: Instance
metadata:
  name: declared-1
  namespace: default
spec:
  slug: declared
  url: %s
  healthCheck:
    path: /declared/healthz
    interval: 1h
`, backend.URL)
	start := time.Now()
	if out, err := c.KubectlIn("root", manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	var took time.Duration
	harness.Eventually(t, 60*time.Second, func() error {
		code, body, err := harness.Get(c.ProxyURL + "/declared/x?y=1")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("HTTP %d %q %v", code, body, err)
		}
		if body != "declared /declared/x" {
			return fmt.Errorf("body %q", body)
		}
		took = time.Since(start)
		return nil
	})
	t.Logf("routable %s after kubectl apply returned", took)
}

// Kill the backend: Unreachable and 503; restart it: Healthy and routed again.
func TestBackendKilledAndRestarted(t *testing.T) {
	walkthroughReady(t)
	c.Skeleton.Kill()  // no graceful deregistration: the controller must notice
	t.Cleanup(func() { // if the test failed half-way, the tests after it still need skeleton-svc
		if exited, _ := c.Skeleton.Exited(); exited {
			if err := c.StartSkeleton(); err != nil {
				t.Errorf("restarting skeleton-svc: %v", err)
			}
		}
	})
	harness.Eventually(t, 60*time.Second, func() error {
		row := harness.FindRow(c.KubectlTable(t, "admin", "instances", "-A"), "OWNER SLUG", "skeleton-svc")
		if row == nil || row["STATUS"] != "Unreachable" {
			return fmt.Errorf("row %v", row)
		}
		return nil
	})
	// The proxy learns the status from its own watch, a moment after kubectl shows it.
	// Until then it still routes to the dead instance, and that may only fail: 502.
	var code int
	var body string
	harness.Eventually(t, 10*time.Second, func() error {
		var err error
		code, body, err = harness.Get(c.ProxyURL + "/skeleton-svc/hello")
		switch {
		case err != nil:
			t.Fatalf("proxy answered %d %q %v for an Unreachable slug, want 503", code, body, err)
		case code == http.StatusBadGateway:
			return fmt.Errorf("proxy answered %d %q: its watch has not seen Unreachable yet", code, body)
		case code != http.StatusServiceUnavailable:
			t.Fatalf("proxy answered %d %q for an Unreachable slug, want 503", code, body)
		}
		return nil
	})
	if !strings.Contains(body, "skeleton-svc") || strings.Contains(body, strings.TrimPrefix(c.SkelURL, "http://")) {
		t.Errorf("503 body should name the slug and not leak the address: %q", body)
	}

	if err := c.StartSkeleton(); err != nil {
		t.Fatal(err)
	}
	walkthroughReady(t)
	rows := c.KubectlTable(t, "admin", "instances", "-A")
	n := 0
	for _, r := range rows {
		if r["OWNER SLUG"] == "skeleton-svc" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d skeleton-svc instances after a restart, want 1 (re-registration must be idempotent)", n)
	}
}

// With two instances, killing one under load loses no request.
func TestFailoverUnderLoad(t *testing.T) {
	var servers []*httptest.Server
	for range 2 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
		t.Cleanup(s.Close) // after the release
		servers = append(servers, s)
	}
	manifest := `apiVersion: slugway.io/v1alpha1
kind: ServiceAccount
metadata:
  name: twins
`
	for i, s := range servers {
		manifest += fmt.Sprintf(`---
apiVersion: slugway.io/v1alpha1
kind: Instance
metadata:
  name: twins-%d
  namespace: default
spec:
  slug: twins
  url: %s
  healthCheck:
    interval: 1s
    timeout: 500ms
`, i, s.URL)
	}
	if out, err := c.KubectlIn("root", manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	c.ReleaseAtCleanup(t, "twins")
	harness.Eventually(t, 20*time.Second, func() error {
		rows := c.KubectlTable(t, "admin", "instances", "-n", "default")
		healthy := 0
		for _, r := range rows {
			if r["OWNER SLUG"] == "twins" && r["STATUS"] == "Healthy" {
				healthy++
			}
		}
		if healthy != 2 {
			return fmt.Errorf("%d healthy", healthy)
		}
		return nil
	})

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := harness.Load(c.ProxyURL+"/twins/work", 4, func(code int, body string, err error) {
		if err != nil || code != http.StatusOK {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP %d %q %v", code, body, err))
		} else {
			ok.Add(1)
		}
	})
	time.Sleep(time.Second)
	servers[0].CloseClientConnections()
	servers[0].Close() // killed: connections reset, the port refuses
	time.Sleep(3 * time.Second)
	stop()
	t.Logf("%d requests succeeded, %d failed, across the kill", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed (first: %v)", failed.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests ran", ok.Load())
	}
}

// Restarting the controller loses nothing: the same instances, still Healthy, still routed.
func TestControllerRestart(t *testing.T) {
	walkthroughReady(t)
	before := c.KubectlTable(t, "admin", "instances", "-A")
	if err := c.Controller.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.Controller, err = c.StartController(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	after := c.KubectlTable(t, "admin", "instances", "-A")
	if len(after) != len(before) {
		t.Fatalf("%d instances before the restart, %d after", len(before), len(after))
	}
	for _, b := range before {
		a := harness.FindRow(after, "ID", b["ID"])
		if a == nil || a["STATUS"] != b["STATUS"] {
			t.Errorf("instance %s: %v before, %v after", b["ID"], b, a)
		}
	}
	walkthroughReady(t)
}
