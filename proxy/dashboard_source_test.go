package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// waitStats waits for the dashboard's figures of slug to count n requests (they
// count complete seconds only, so this takes up to a second).
func waitStats(t *testing.T, h *Handler, slug string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := h.stats.Stats(slug, false)
		if st.Requests == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard counts %d requests for %q, want %d", st.Requests, slug, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDashboardCountsEveryAnsweredRequest: requests served by the fast front end
// and by net/http both reach the Recorder, under their slug or as unknown.
func TestDashboardCountsEveryAnsweredRequest(t *testing.T) {
	h := NewHandler(Options{Dashboard: true})
	h.SetTable(table("s", minimalOrigin(t)))
	rt := roundTripper(t, behindFront(t, h))
	for range 30 {
		rt()
	}
	for range 5 { // net/http's path: an unknown slug
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/nope/x", nil))
	}
	waitStats(t, h, "s", 30)
	waitStats(t, h, unknownSlug, 5)
	if st := h.stats.Stats(unknownSlug, false); st.Status4xx != 5 {
		t.Fatalf("the unknown slug's 404s: %+v", st)
	}
	if NewHandler(Options{}).stats != nil {
		t.Fatal("without --dashboard there is no Recorder")
	}
}

func TestFrontAllocatesNothingPerRequestWithTheDashboard(t *testing.T) {
	h := NewHandler(Options{Dashboard: true})
	h.SetTable(table("s", minimalOrigin(t)))
	rt := roundTripper(t, behindFront(t, h))
	for range 100 {
		rt()
	}
	if a := testing.AllocsPerRun(2000, rt); a > 0.05 {
		t.Fatalf("%.2f allocations per proxied request with the dashboard on; want none", a)
	}
}

// TestDashboardSourceJoinsCacheAndLiveState: the dashboard's slug and instances
// come from the cache (owner, display name, Ready, status, heartbeat) joined with
// the live table (routed, requests in flight, ejection).
func TestDashboardSourceJoinsCacheAndLiveState(t *testing.T) {
	ctx := context.Background()
	c := indexedClient()
	hb := metav1.NewTime(time.Now().Add(-7 * time.Second).Truncate(time.Second))
	sa := &slugwayv1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "a"},
		Spec:       slugwayv1.ServiceAccountSpec{DisplayName: "Service A", Owner: "team-a"},
		Status: slugwayv1.ServiceAccountStatus{Instances: 3, HealthyInstances: 2, Conditions: []metav1.Condition{{
			Type: slugwayv1.ConditionReady, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonInstancesRoutable, LastTransitionTime: hb,
		}}},
	}
	inst := func(name, url string, health slugwayv1.Health) *slugwayv1.Instance {
		return &slugwayv1.Instance{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec:       slugwayv1.InstanceSpec{Slug: "a", URL: url},
			Status: slugwayv1.InstanceStatus{Status: health, LastHeartbeat: &hb, Conditions: []metav1.Condition{
				{Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonSlugClaimed, LastTransitionTime: hb},
				{Type: slugwayv1.ConditionReady, Status: map[bool]metav1.ConditionStatus{true: metav1.ConditionTrue, false: metav1.ConditionFalse}[health == slugwayv1.HealthHealthy],
					Reason: slugwayv1.ReasonProbeFailed, LastTransitionTime: hb},
			}},
		}
	}
	for _, o := range []client.Object{sa, inst("i1", "http://10.0.0.1", slugwayv1.HealthHealthy), inst("i2", "http://10.0.0.2", slugwayv1.HealthHealthy), inst("i3", "http://10.0.0.3", slugwayv1.HealthUnreachable)} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{Dashboard: true}
	h := NewHandler(o)
	p := &Proxy{handler: h, watcher: newWatcherOn(c, h, o)}
	d := newDashboardSource(p, &o)
	if d == nil || o.OnTableSwap == nil {
		t.Fatal("with Dashboard set, the source hooks the table swaps")
	}
	tbl, err := p.watcher.fullTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.SetTable(tbl)
	h.metrics.propagation.Observe(0.042) // as watcher.update does before the hook
	o.OnTableSwap(tbl)

	lr := h.table.Load().routes["a"]
	lr.backends[0].inflight.Store(4)
	lr.backends[1].eject(time.Minute, time.Minute)

	s, insts, ok := d.Slug("a")
	if !ok {
		t.Fatal("slug a unknown")
	}
	if s.DisplayName != "Service A" || s.Owner != "team-a" || s.Ready != "True" || s.Routable != 2 || s.Total != 3 {
		t.Fatalf("slug: %+v", s)
	}
	byName := map[string]int{}
	for i, in := range insts {
		byName[in.Name] = i
	}
	if len(insts) != 3 {
		t.Fatalf("instances: %+v", insts)
	}
	i1, i2, i3 := insts[byName["i1"]], insts[byName["i2"]], insts[byName["i3"]]
	if !i1.Routed || i1.InFlight != 4 || i1.EjectedUntil != nil || i1.Status != "Healthy" || !i1.LastHeartbeat.Equal(hb.Time) || i1.URL != "http://10.0.0.1" {
		t.Errorf("i1: %+v", i1)
	}
	if !i2.Routed || i2.EjectedUntil == nil || time.Until(*i2.EjectedUntil) < 50*time.Second {
		t.Errorf("i2 was ejected for a minute: %+v", i2)
	}
	if i3.Routed || i3.Status != "Unreachable" || i3.Reason != slugwayv1.ReasonProbeFailed {
		t.Errorf("i3: %+v", i3)
	}
	if _, _, ok := d.Slug("nope"); ok {
		t.Error("an unknown slug is not found")
	}
	if all := d.Slugs(); len(all) != 1 || all[0].Name != "a" || all[0].Routable != 2 {
		t.Errorf("Slugs: %+v", all)
	}
	tb := d.Table()
	if tb.Slugs != 1 || tb.LastPropagation != 42*time.Millisecond || time.Since(tb.SwappedAt) > time.Minute || tb.Builds != 1 {
		t.Errorf("Table: %+v", tb)
	}

	// Mounted on the admin mux, the page and its API answer.
	p.opts, p.dash = o, d
	srv := httptest.NewServer(p.adminMux())
	defer srv.Close()
	for path, want := range map[string]int{"/dashboard/": 200, "/dashboard/api/slugs/a": 200, "/dashboard/api/overview": 200, "/dashboard": 301} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want == 301 && resp.StatusCode/100 == 3 && resp.Header.Get("Location") == "/dashboard/" {
			continue // a redirect to the page
		}
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	var noDash Proxy
	noDash.handler = NewHandler(Options{})
	srv2 := httptest.NewServer(noDash.adminMux())
	defer srv2.Close()
	if resp, err := http.Get(srv2.URL + "/dashboard/"); err != nil || resp.StatusCode != 404 {
		t.Errorf("without --dashboard, /dashboard/ must not be served: %v %v", resp.StatusCode, err)
	}
}
