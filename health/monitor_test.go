package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slugway/slugway/internal/tarpit"
)

// TestMonitorNotifiesOnTransitionsOnly runs real probes against a real HTTP server and
// checks that the Monitor asks for a status write on a transition, not on every probe.
func TestMonitorNotifiesOnTransitionsOnly(t *testing.T) {
	var failing atomic.Bool
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	var mu sync.Mutex
	var notes []Health
	var m *Monitor[string]
	m = NewMonitor[string](NewProber(nil), 4, time.Hour, func(k string) {
		st, _ := m.State(k)
		mu.Lock()
		notes = append(notes, st.Health)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Start(ctx) }()

	m.Ensure("a", Spec{
		Target:     Target{Kind: KindHTTP, URL: srv.URL + "/healthz", Timeout: time.Second},
		Interval:   30 * time.Millisecond,
		Thresholds: Thresholds{Healthy: 1, Unhealthy: 2},
	})
	waitFor(t, func() bool { st, _ := m.State("a"); return st.Health == Healthy && st.Probes >= 5 })
	failing.Store(true)
	waitFor(t, func() bool { st, _ := m.State("a"); return st.Health == Unreachable })
	failing.Store(false)
	waitFor(t, func() bool { st, _ := m.State("a"); return st.Health == Healthy })

	mu.Lock()
	defer mu.Unlock()
	want := []Health{Healthy, Unreachable, Healthy}
	if len(notes) != len(want) {
		t.Fatalf("notifications %v, want %v (after %d probes)", notes, want, hits.Load())
	}
	for i := range want {
		if notes[i] != want[i] {
			t.Fatalf("notifications %v, want %v", notes, want)
		}
	}
	if hits.Load() < 8 {
		t.Fatalf("only %d probes ran", hits.Load())
	}
}

// TestMonitorRefresh: with a short Refresh, successes are re-notified at that pace.
func TestMonitorRefresh(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	var notes atomic.Int64
	m := NewMonitor[string](NewProber(nil), 2, 100*time.Millisecond, func(string) { notes.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Start(ctx) }()
	m.Ensure("a", Spec{Target: Target{Kind: KindHTTP, URL: srv.URL, Timeout: time.Second}, Interval: 10 * time.Millisecond, Thresholds: Thresholds{Healthy: 1, Unhealthy: 1}})
	waitFor(t, func() bool { return notes.Load() >= 3 })
	st, _ := m.State("a")
	if int64(st.Probes) < 3*notes.Load() {
		t.Fatalf("%d notifications for %d probes: refresh is not coarser than the probe interval", notes.Load(), st.Probes)
	}
}

func TestMonitorForgetAndTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	m := NewMonitor[string](NewProber(nil), 2, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Start(ctx) }()
	spec := Spec{Target: Target{Kind: KindTCP, Address: ln.Addr().String(), Timeout: time.Second}, Interval: 20 * time.Millisecond, Thresholds: Thresholds{Healthy: 1, Unhealthy: 1}}
	m.Ensure("tcp", spec)
	waitFor(t, func() bool { st, _ := m.State("tcp"); return st.Health == Healthy })
	_ = ln.Close()
	waitFor(t, func() bool { st, _ := m.State("tcp"); return st.Health == Unreachable })
	m.Forget("tcp")
	if _, ok := m.State("tcp"); ok || m.Len() != 0 {
		t.Fatal("Forget left the instance behind")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMonitorRefreshBudget: MaxRefreshRate stretches the refresh interval to
// instances ÷ rate, so that many instances cannot refresh faster than the budget.
// It checks each instance's refreshes against the monitor's own clock (Refreshed
// reports the success time it compared), not against the wall clock of the test:
// a slow machine spaces refreshes further apart, never closer, so it cannot fail
// this, while a monitor that ignored the budget would refresh every ~100ms.
func TestMonitorRefreshBudget(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	const instances, wantRefreshes = 10, 3
	var mu sync.Mutex
	refreshed := map[int][]time.Time{}
	done := make(chan struct{})
	m := NewMonitor[int](NewProber(nil), 4, 100*time.Millisecond, func(int) {})
	m.Refreshed = func(k int, last time.Time) {
		mu.Lock()
		defer mu.Unlock()
		refreshed[k] = append(refreshed[k], last)
		for i := range instances {
			if len(refreshed[i]) < wantRefreshes {
				return
			}
		}
		select {
		case <-done:
		default:
			close(done)
		}
	}
	m.MaxRefreshRate = 20 // 10 instances: one refresh per instance per 500ms, not per 100ms
	if got := m.RefreshInterval(); got != 100*time.Millisecond {
		t.Fatalf("no instances: interval %v, want the configured 100ms", got)
	}
	// All instances are known before the first probe, so every refresh is held to the full budget.
	for i := range instances {
		m.Ensure(i, Spec{Target: Target{Kind: KindHTTP, URL: srv.URL, Timeout: time.Second}, Interval: 10 * time.Millisecond, Thresholds: Thresholds{Healthy: 1, Unhealthy: 1}})
	}
	budget := m.RefreshInterval()
	if budget != 500*time.Millisecond {
		t.Fatalf("10 instances at 20/s: interval %v, want 500ms", budget)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Start(ctx) }()
	select {
	case <-done:
	case <-time.After(time.Minute): // a hang guard, not a performance bound
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("not every instance refreshed %d times within a minute: %v", wantRefreshes, refreshed)
	}
	cancel()

	mu.Lock()
	defer mu.Unlock()
	for i := range instances {
		times := refreshed[i]
		// Callbacks run outside the monitor's lock, so a stalled one may report after its successor.
		slices.SortFunc(times, time.Time.Compare)
		for j := 1; j < len(times); j++ {
			if gap := times[j].Sub(times[j-1]); gap < budget {
				t.Errorf("instance %d refreshed %s after its previous refresh, want at least the budget's %s", i, gap, budget)
			}
		}
	}
}

// TestMonitorFairAcrossGroups: 32 tarpitted instances of one group cannot hold more
// than the group's share of the workers, so another group's new instance is probed at
// once, not after the tarpit's timeouts; and the tarpitted group still gets its share.
func TestMonitorFairAcrossGroups(t *testing.T) {
	tp := tarpit.New(t)
	good := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer good.Close()
	m := NewMonitor[string](NewProber(nil), 8, time.Hour, nil) // share 1/4: 2 workers per group
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Start(ctx) }()
	const timeout = 5 * time.Second
	for i := range 32 {
		m.Ensure(fmt.Sprintf("slow-%d", i), Spec{
			Target:   Target{Kind: KindHTTP, URL: fmt.Sprintf("http://%s/i%d", tp.Addr(), i), Timeout: timeout},
			Interval: 2 * timeout, Groups: Groups{"slug:slow", "owner:mallory"},
		})
	}
	waitFor(t, func() bool { open, _ := tp.Counts(); return open >= 2 })
	start := time.Now()
	m.Ensure("fresh", Spec{Target: Target{Kind: KindHTTP, URL: good.URL, Timeout: time.Second}, Interval: time.Second, Groups: Groups{"slug:fresh", "owner:alice"}})
	waitFor(t, func() bool { st, _ := m.State("fresh"); return st.Health == Healthy })
	if took := time.Since(start); took >= timeout {
		t.Fatalf("the fresh instance waited %s for its first probe, as long as the tarpit's timeout: the slow group held every worker", took)
	}
	// An owner's share bounds all of its slugs together.
	for i := range 8 {
		m.Ensure(fmt.Sprintf("slow2-%d", i), Spec{
			Target:   Target{Kind: KindHTTP, URL: fmt.Sprintf("http://%s/j%d", tp.Addr(), i), Timeout: timeout},
			Interval: 2 * timeout, Groups: Groups{"slug:slow2", "owner:mallory"},
		})
	}
	time.Sleep(200 * time.Millisecond) // give a broken scheduler the chance to overrun the share
	if _, peak := tp.Counts(); peak != 2 {
		t.Fatalf("the tarpit held %d probes at once; want exactly the group's share of 2", peak)
	}
	m.mu.Lock()
	parked := len(m.parked["owner:mallory"]) + len(m.parked["slug:slow"])
	m.mu.Unlock()
	if parked == 0 {
		t.Fatal("no probe of the slow group is parked, yet only 2 of 40 run")
	}
}

// TestMonitorParkedForgetAndEnsure: a parked probe can be forgotten or respecified
// without leaving it queued twice or lost.
func TestMonitorParkedForgetAndEnsure(t *testing.T) {
	tp := tarpit.New(t)
	good := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer good.Close()
	m := NewMonitor[string](NewProber(nil), 4, time.Hour, nil)
	m.GroupShare = 0.25 // one worker per group
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Start(ctx) }()
	slow := func(i int) Spec {
		return Spec{Target: Target{Kind: KindHTTP, URL: fmt.Sprintf("http://%s/%d", tp.Addr(), i), Timeout: 3 * time.Second}, Interval: 6 * time.Second, Groups: Groups{"g"}}
	}
	for i := range 3 {
		m.Ensure(fmt.Sprint(i), slow(i))
	}
	waitFor(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.parked["g"]) == 2
	})
	m.mu.Lock()
	a, b := m.parked["g"][0].key, m.parked["g"][1].key
	m.mu.Unlock()
	m.Forget(a)
	// Moved to another group, b runs at once, and is healthy.
	m.Ensure(b, Spec{Target: Target{Kind: KindHTTP, URL: good.URL, Timeout: time.Second}, Interval: time.Second, Groups: Groups{"h"}})
	waitFor(t, func() bool { st, _ := m.State(b); return st.Health == Healthy })
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.parked["g"]); n != 0 {
		t.Fatalf("%d probes still parked on g after Forget and Ensure", n)
	}
	if len(m.items) != 2 {
		t.Fatalf("Len = %d, want 2", len(m.items))
	}
}
