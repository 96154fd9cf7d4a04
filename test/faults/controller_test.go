package faults

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/proc"
	"github.com/slugway/slugway/test/harness"
)

// Kill the controller while it is bringing 30 new instances up, start it again: every
// instance converges to Healthy, and each has a handful of Events, not a storm. Half
// of the instances fail their probes until the kill, so however fast the machine,
// the controller dies with work left: the test asserts that it did.
func TestControllerKilledMidWork(t *testing.T) {
	const n = 30
	var held atomic.Bool // instances n/2 and up answer 503 until the controller is dead
	held.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var i int
		if _, err := fmt.Sscanf(r.URL.Path, "/i%d", &i); err == nil && i >= n/2 && held.Load() {
			http.Error(w, "not up yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	manifest := "apiVersion: slugway.io/v1alpha1\nkind: ServiceAccount\nmetadata:\n  name: midwork\n"
	for i := range n {
		manifest += fmt.Sprintf("---\napiVersion: slugway.io/v1alpha1\nkind: Instance\nmetadata:\n  name: midwork-%d\n  namespace: default\nspec:\n  slug: midwork\n  url: %s/i%d\n  healthCheck:\n    interval: 1s\n    timeout: 500ms\n", i, srv.URL, i)
	}
	if out, err := c.KubectlIn("root", manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	c.ReleaseAtCleanup(t, "midwork")
	countHealthy := func() (healthy int) {
		for _, r := range c.KubectlTable(t, "admin", "instances", "-n", "default") {
			if r["OWNER SLUG"] == "midwork" && r["STATUS"] == "Healthy" {
				healthy++
			}
		}
		return healthy
	}
	// Mid-work: the controller has begun (an instance is Healthy), and has not finished.
	harness.Eventually(t, 30*time.Second, func() error {
		if countHealthy() == 0 {
			return fmt.Errorf("no midwork instance Healthy yet")
		}
		return nil
	})
	c.Controller.Kill()
	healthy := countHealthy() // the dead controller writes no more
	t.Logf("%d of %d instances were Healthy when the controller was killed", healthy, n)
	if healthy == 0 || healthy > n/2 {
		t.Fatalf("%d of %d instances Healthy at the kill; want some, and none of the %d still held back: the kill did not come mid-work", healthy, n, n-n/2)
	}
	held.Store(false)
	var err error
	if c.Controller, err = c.StartController(); err != nil {
		t.Fatal(err)
	}
	// The killed leader's lease must expire (15s) before the new process leads.
	waitHealthy(t, "midwork", n, 60*time.Second)

	var events corev1.EventList
	if err := c.Env.Client.List(context.Background(), &events, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, e := range events.Items {
		if strings.HasPrefix(e.InvolvedObject.Name, "midwork-") {
			per[e.InvolvedObject.Name] += max(int(e.Count), 1)
			if e.Series != nil {
				per[e.InvolvedObject.Name] += int(e.Series.Count) - 1
			}
		}
	}
	most := 0
	for _, k := range per {
		most = max(most, k)
	}
	t.Logf("events per instance after the kill and restart: at most %d (%d instances with events)", most, len(per))
	if most > 4 {
		t.Errorf("an instance got %d events: a duplicate event storm", most)
	}
}

// Two replicas: exactly one leads; kill it and the other takes over within the lease
// duration (4s here, set by flag; 15s by default).
func TestLeaderElectionTakeover(t *testing.T) {
	lease := []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"}
	// Replace the suite's controller by two replicas with short lease timings.
	_ = c.Controller.Stop(15 * time.Second)
	a, err := c.StartControllerNamed("controller-a", true, lease...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.StartControllerNamed("controller-b", false, lease...)
	if err != nil {
		t.Fatal(err)
	}
	leaderOf := func() (*proc.Proc, *proc.Proc, error) {
		la, lb := acquired(a), acquired(b)
		switch {
		case la && lb:
			return nil, nil, fmt.Errorf("both replicas acquired the lease")
		case la:
			return a, b, nil
		case lb:
			return b, a, nil
		}
		return nil, nil, fmt.Errorf("no replica leads yet")
	}
	var leader, standby *proc.Proc
	harness.Eventually(t, 30*time.Second, func() (err error) { leader, standby, err = leaderOf(); return err })
	var l coordinationv1.Lease
	if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "controller.slugway.io"}, &l); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s leads (lease holder %s)", leader.Name, *l.Spec.HolderIdentity)
	time.Sleep(2 * time.Second)
	if acquired(standby) {
		t.Fatal("the standby acquired the lease while the leader was alive")
	}

	killed := time.Now()
	leader.Kill()
	harness.Eventually(t, 20*time.Second, func() error {
		if !acquired(standby) {
			return fmt.Errorf("%s has not taken over", standby.Name)
		}
		return nil
	})
	took := time.Since(killed)
	t.Logf("%s took over %s after the leader was killed (lease duration 4s)", standby.Name, took.Round(100*time.Millisecond))
	if took > 4*time.Second+2*time.Second {
		t.Errorf("takeover took %s, more than the lease duration plus a retry period", took)
	}

	// The webhooks went down with a if it led; a Deployment would restart it. Do that
	// (as a standby: b leads now), then show the new leader doing the work.
	if leader == a {
		if a, err = c.StartControllerNamed("controller-a2", true, lease...); err != nil {
			t.Fatal(err)
		}
	}
	register(t, "after-takeover", fastHC, okServer(t, "ok").URL)
	waitHealthy(t, "after-takeover", 1, 30*time.Second)

	// Back to one controller (a, which serves the webhooks) for the next tests.
	_ = b.Stop(15 * time.Second)
	c.Controller = a
}

func acquired(p *proc.Proc) bool {
	b, _ := os.ReadFile(p.Log)
	return strings.Contains(strings.ToLower(string(b)), "successfully acquired lease")
}

// The apiserver goes away for 30s and comes back: the proxy routes with its last table
// throughout; the controller (restarted by its supervisor, as a Deployment would, after it
// loses its lease) resumes probing; no instance is lost, and no heartbeat-mode instance is
// expired for heartbeats its service could not send.
func TestAPIServerDown30s(t *testing.T) {
	var failing atomic.Bool
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("flaky-ok"))
	}))
	defer flaky.Close()
	register(t, "outage", fastHC, okServer(t, "outage-ok").URL)
	register(t, "flaky", fastHC, flaky.URL)
	register(t, "beats", "type: heartbeat\nttl: 20s", "http://beats.invalid:8080")
	beat := func() error {
		_, err := c.KubectlAs("root", "patch", "instance", "beats-0", "-n", "default", "--subresource=status", "--type=merge",
			"-p", fmt.Sprintf(`{"status":{"lastHeartbeat":%q}}`, time.Now().UTC().Format(time.RFC3339)))
		return err
	}
	if err := beat(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, "outage", 1, 30*time.Second)
	waitHealthy(t, "flaky", 1, 30*time.Second)
	waitHealthy(t, "beats", 1, 30*time.Second)
	before := len(instances(t))

	// Supervise the controller from here on, as a Deployment would.
	_ = c.Controller.Stop(15 * time.Second)
	sup := harness.Supervise(func() (*proc.Proc, error) { return c.StartController() })
	defer sup.Stop()
	harness.Eventually(t, 30*time.Second, func() error {
		if sup.Current() == nil {
			return fmt.Errorf("controller not started")
		}
		return nil
	})

	if err := c.Env.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	served := 0
	for time.Since(down) < 30*time.Second {
		code, body, err := harness.Get(c.ProxyURL + "/outage/x")
		if err != nil || code != http.StatusOK || body != "outage-ok" {
			t.Fatalf("%s into the outage: %d %q %v", time.Since(down).Round(time.Second), code, body, err)
		}
		served++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d requests routed during the 30s outage", served)
	if err := c.Env.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("apiserver back after %s; controller restarts so far: %d", time.Since(down).Round(time.Second), sup.Restarts())

	// Nothing lost; the heartbeat instance (last beat 30s+ ago, TTL 20s) is not expired
	// before its service had a TTL to renew it.
	if after := len(instances(t)); after != before {
		t.Fatalf("%d instances before the outage, %d after", before, after)
	}
	time.Sleep(5 * time.Second)
	for _, r := range c.KubectlTable(t, "admin", "instances", "-n", "default") {
		if r["OWNER SLUG"] == "beats" && r["STATUS"] != "Healthy" {
			t.Fatalf("heartbeat instance turned %s right after the outage: its service could not beat meanwhile", r["STATUS"])
		}
	}
	// The service renews as soon as it can (the webhook returns with the restarted controller).
	harness.Eventually(t, 60*time.Second, beat)

	// Probing resumed: a backend that starts failing now is seen, written and routed around.
	failing.Store(true)
	harness.Eventually(t, 60*time.Second, func() error {
		row := harness.FindRow(c.KubectlTable(t, "admin", "instances", "-n", "default"), "OWNER SLUG", "flaky")
		if row == nil || row["STATUS"] != "Unreachable" {
			return fmt.Errorf("flaky instance: %v", row)
		}
		return nil
	})
	// The proxy's watch resumed too (within proxyResync): it learns the new status and
	// answers 503 itself (the instance's own 503 has an empty body), and it routes a slug
	// registered after the outage, which needs both its informers.
	unreachable := time.Now()
	waitRouted(t, "flaky", 0)
	t.Logf("the proxy routes around the flaky instance %s after the apiserver came back, %s after kubectl showed it Unreachable",
		time.Since(back).Round(time.Second), time.Since(unreachable).Round(time.Second))
	code, body, _ := harness.Get(c.ProxyURL + "/flaky/x")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"slug":"flaky"`) {
		t.Errorf("proxy answered %d %q for a slug whose only instance is Unreachable, want its own 503", code, body)
	}
	register(t, "after-outage", fastHC, okServer(t, "after-outage-ok").URL)
	waitHealthy(t, "after-outage", 1, 60*time.Second)
	if code, body, err := harness.Get(c.ProxyURL + "/after-outage/x"); err != nil || code != http.StatusOK || body != "after-outage-ok" {
		t.Errorf("a slug registered after the outage: %d %q %v", code, body, err)
	}
	var list slugwayv1.InstanceList
	_ = c.Env.Client.List(context.Background(), &list)
	sup.Stop()
	if c.Controller, _ = c.StartController(); c.Controller == nil {
		t.Fatal("controller did not restart")
	}
}
