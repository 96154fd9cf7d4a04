package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/manager"
	"github.com/slugway/slugway/registry"
)

// Probe-driven transitions: Healthy -> Unreachable -> Healthy, and Degraded, each with an Event.
func TestProbeTransitions(t *testing.T) {
	startController(t, nil)
	b := newBackend(t, 170*time.Millisecond)
	claim(t, "transitions")
	inst := newInstance(t, "transitions-1", "transitions", b.URL, fastCheck())

	got := waitStatus(t, inst, slugwayv1.HealthHealthy)
	if got.Status.LastHeartbeat == nil {
		t.Fatal("a Healthy instance has no lastHeartbeat")
	}
	waitOwned(t, inst, metav1.ConditionTrue, slugwayv1.ReasonSlugClaimed)

	b.set("fail")
	got = waitStatus(t, inst, slugwayv1.HealthUnreachable)
	if !strings.Contains(got.Status.Conditions[0].Message+got.Status.Conditions[1].Message, "HTTP 500") {
		t.Errorf("conditions do not say why: %+v", got.Status.Conditions)
	}

	b.set("ok")
	waitStatus(t, inst, slugwayv1.HealthHealthy)

	b.set("slow") // 170ms > degradedAfter 100ms, < timeout 500ms
	waitStatus(t, inst, slugwayv1.HealthDegraded)

	b.set("ok")
	waitStatus(t, inst, slugwayv1.HealthHealthy)

	testenv.Eventually(t, 5*time.Second, func(context.Context) error {
		r := eventReasons(t, inst)
		for _, want := range []string{"Healthy", "Unreachable", "Degraded", "SlugClaimed"} {
			if !slices.Contains(r, want) {
				return fmt.Errorf("no %s event among %v", want, r)
			}
		}
		return nil
	})
}

// A backend that stops answering within the timeout is Unreachable, not Degraded.
func TestProbeTimeoutIsUnreachable(t *testing.T) {
	startController(t, nil)
	b := newBackend(t, 600*time.Millisecond)
	claim(t, "timeouts")
	inst := newInstance(t, "timeouts-1", "timeouts", b.URL, fastCheck())
	waitStatus(t, inst, slugwayv1.HealthHealthy)
	b.set("slow")
	got := waitStatus(t, inst, slugwayv1.HealthUnreachable)
	if !strings.Contains(fmt.Sprint(got.Status.Conditions), "no answer within") {
		t.Errorf("conditions do not name the timeout: %+v", got.Status.Conditions)
	}
}

// Heartbeat mode: Healthy while lastHeartbeat is younger than the TTL, Unreachable after.
func TestHeartbeatTTL(t *testing.T) {
	startController(t, nil)
	claim(t, "beats")
	hc := slugwayv1.HealthCheck{Type: slugwayv1.HealthCheckHeartbeat, TTL: ms(1500 * time.Millisecond)}
	inst := newInstance(t, "beats-1", "beats", "http://beats.example:8080", hc)
	ctx := context.Background()

	beat := func() {
		t.Helper()
		patch := []byte(fmt.Sprintf(`{"status":{"lastHeartbeat":%q}}`, time.Now().UTC().Format(time.RFC3339Nano)))
		if err := env.Client.Status().Patch(ctx, inst, client.RawPatch("application/merge-patch+json", patch)); err != nil {
			t.Fatal(err)
		}
	}
	beat()
	waitStatus(t, inst, slugwayv1.HealthHealthy)
	// Keep beating for longer than the TTL: it must stay Healthy.
	for range 4 {
		time.Sleep(500 * time.Millisecond)
		beat()
		got := &slugwayv1.Instance{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Status != slugwayv1.HealthHealthy {
			t.Fatalf("beating instance turned %s", got.Status.Status)
		}
	}
	// Stop beating: Unreachable after the TTL.
	stopped := time.Now()
	got := waitStatus(t, inst, slugwayv1.HealthUnreachable)
	if time.Since(stopped) < time.Second {
		t.Fatalf("turned Unreachable %s after the last beat, before the 1.5s TTL", time.Since(stopped))
	}
	if !strings.Contains(fmt.Sprint(got.Status.Conditions), "no heartbeat within the TTL") {
		t.Errorf("conditions do not explain: %+v", got.Status.Conditions)
	}
	beat()
	waitStatus(t, inst, slugwayv1.HealthHealthy)
}

// An instance whose slug is not claimed is not owned, and never Ready, even if it answers.
func TestSlugNotFound(t *testing.T) {
	startController(t, nil)
	b := newBackend(t, 0)
	inst := newInstance(t, "orphan-1", "nobody-claimed-this", b.URL, fastCheck())
	cond := waitOwned(t, inst, metav1.ConditionFalse, slugwayv1.ReasonSlugNotFound)
	if !strings.Contains(cond.Message, "create the ServiceAccount") {
		t.Errorf("message does not say what to do: %q", cond.Message)
	}
	// It answers its probes, so it is Healthy, but it is not Ready (not routable).
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		got := &slugwayv1.Instance{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
			return err
		}
		if got.Status.Status != slugwayv1.HealthHealthy {
			return fmt.Errorf("status %s", got.Status.Status)
		}
		if r := findReady(got); r.Status != metav1.ConditionFalse || r.Reason != slugwayv1.ReasonNotOwned {
			t.Fatalf("unowned instance is Ready: %+v", r)
		}
		return nil
	})
}

func findReady(inst *slugwayv1.Instance) metav1.Condition {
	for _, c := range inst.Status.Conditions {
		if c.Type == slugwayv1.ConditionReady {
			return c
		}
	}
	return metav1.Condition{}
}

// Claiming the slug later does not make a pre-planted instance owned: it is older
// than the claim, so it may stem from an earlier claim of the slug. An admin may adopt
// it by recording the claim's UID on it.
func TestSlugClaimedLater(t *testing.T) {
	startController(t, nil)
	b := newBackend(t, 0)
	inst := newInstance(t, "late-1", "late", b.URL, fastCheck())
	waitOwned(t, inst, metav1.ConditionFalse, slugwayv1.ReasonSlugNotFound)
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second precision
	sa := claim(t, "late")
	cond := waitOwned(t, inst, metav1.ConditionFalse, slugwayv1.ReasonClaimMismatch)
	if !strings.Contains(cond.Message, "created before the current claim") || !strings.Contains(cond.Message, registry.LabelClaimUID) {
		t.Errorf("message does not say why and what to do: %q", cond.Message)
	}
	got := &slugwayv1.Instance{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(inst), got); err != nil {
		t.Fatal(err)
	}
	got.Labels = map[string]string{registry.LabelClaimUID: string(sa.UID)}
	if err := env.Client.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	waitOwned(t, inst, metav1.ConditionTrue, slugwayv1.ReasonSlugClaimed)
	waitStatus(t, inst, slugwayv1.HealthHealthy)
}

// Two slugs' instances on one URL: the older holds it, the newer is flagged URLConflict and
// not Ready. (Admission refuses this; the controller catches what a race lets through.)
// When the holder goes, the conflict clears.
func TestURLConflict(t *testing.T) {
	startController(t, nil)
	b := newBackend(t, 0)
	claim(t, "first")
	claim(t, "second")
	holder := newInstance(t, "first-1", "first", b.URL, fastCheck())
	waitStatus(t, holder, slugwayv1.HealthHealthy)
	time.Sleep(1100 * time.Millisecond) // creationTimestamp has one-second resolution
	late := newInstance(t, "second-1", "second", b.URL+"/", fastCheck())
	cond := waitOwned(t, late, metav1.ConditionFalse, slugwayv1.ReasonURLConflict)
	if !strings.Contains(cond.Message, `slug "first"`) {
		t.Errorf("conflict message does not name the holder: %q", cond.Message)
	}
	waitOwned(t, holder, metav1.ConditionTrue, slugwayv1.ReasonSlugClaimed)

	if err := env.Client.Delete(context.Background(), holder); err != nil {
		t.Fatal(err)
	}
	waitOwned(t, late, metav1.ConditionTrue, slugwayv1.ReasonSlugClaimed)
	waitStatus(t, late, slugwayv1.HealthHealthy)
}

// The write budget: a probe every 200ms must not mean a write every 200ms. Status is
// written on transitions plus one lastHeartbeat refresh per HeartbeatRefresh (stretched
// by MaxHeartbeatWrites), and not at all when nothing changes and the refresh is long.
// The refreshes are counted against the probes the backend answered, not the wall
// clock: a refresh needs a successful probe a refresh interval after the last, so on a
// slow machine fewer probes mean fewer refreshes due, and the bounds move with them.
func TestWriteBudget(t *testing.T) {
	const n = 10
	b := newBackend(t, 0)
	ctx := context.Background()
	claim(t, "budget")
	// Probe every second (the CRD's minimum); generous timeout and thresholds so that a
	// loaded machine causes few transitions (each is a legitimate write, counted apart
	// from the refreshes).
	const interval = time.Second
	hc := fastCheck()
	hc.Interval, hc.Timeout, hc.DegradedAfter, hc.UnhealthyThreshold = ms(interval), ms(500*time.Millisecond), ms(500*time.Millisecond), 5

	type counts struct {
		refreshes, transitions int
		allowed, due           int // refreshes the observed probes allow at most, and call for at least
		probes                 int
	}
	measure := func(refresh, window time.Duration, budget float64) (c counts) {
		t.Helper()
		o := env.ControllerOptions()
		o.HeartbeatRefresh = refresh
		o.MaxHeartbeatWrites = budget
		stop, err := env.StartController(o)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		var insts []*slugwayv1.Instance
		for i := range n {
			name := fmt.Sprintf("budget-%d", i)
			inst := &slugwayv1.Instance{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, inst); apierrors.IsNotFound(err) {
				inst = newInstance(t, name, "budget", fmt.Sprintf("%s/i%d", b.URL, i), hc)
			}
			insts = append(insts, inst)
		}
		for _, inst := range insts {
			waitStatus(t, inst, slugwayv1.HealthHealthy)
		}
		time.Sleep(300 * time.Millisecond) // let the first heartbeat writes land
		var list slugwayv1.InstanceList
		if err := env.Client.List(ctx, &list, client.InNamespace("default")); err != nil {
			t.Fatal(err)
		}
		last := map[string]slugwayv1.InstanceStatus{}
		for _, inst := range list.Items {
			last[inst.Name] = inst.Status
		}
		w, err := envWatch(ctx, list.ResourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		start := time.Now()
		deadline := time.After(window)
	watching:
		for {
			select {
			case ev := <-w.ResultChan():
				inst, ok := ev.Object.(*slugwayv1.Instance)
				if !ok || ev.Type != watch.Modified || inst.Spec.Slug != "budget" {
					continue
				}
				prev := last[inst.Name]
				last[inst.Name] = inst.Status
				prev.LastHeartbeat = inst.Status.LastHeartbeat
				if equality.Semantic.DeepEqual(prev, inst.Status) {
					c.refreshes++
				} else {
					c.transitions++
					t.Logf("transition write: %s %+v", inst.Name, inst.Status)
				}
			case <-deadline:
				break watching
			}
		}
		end := time.Now()
		// The interval the refreshes keep (the budget stretches it). The monitor times it
		// from its own probes, which end a moment after the backend answered them.
		every := refresh
		if budget > 0 {
			every = max(every, time.Duration(float64(n)/budget*float64(time.Second)))
		}
		for i := range n {
			probes := b.probesOf(fmt.Sprintf("/i%d/healthz", i), start, end)
			c.probes += len(probes)
			c.allowed += spaced(probes, every-interval) + 1 // one may be on its way at the start
			// Due: probes a full interval (plus the stored second) apart, answered early
			// enough for the write to land in the window.
			due := spaced(probesBefore(probes, end.Add(-time.Second)), every+time.Second)
			c.due += max(due-1, 0) // the first may follow a refresh just before the window
		}
		// A transition resets the refresh interval (and may carry a heartbeat).
		c.due = max(c.due-c.transitions, 0)
		return c
	}
	check := func(name string, c counts) {
		t.Helper()
		t.Logf("%s: %d refresh writes (probes allow at most %d, call for at least %d), %d transitions, %d probes", name, c.refreshes, c.allowed, c.due, c.transitions, c.probes)
		if c.refreshes > c.allowed {
			t.Errorf("%s: %d refresh writes, but the %d probes answered allow only %d: more than one per refresh interval", name, c.refreshes, c.probes, c.allowed)
		}
		if c.refreshes < c.due {
			t.Errorf("%s: %d refresh writes, but the %d probes answered call for %d: the heartbeat refresh did not happen", name, c.refreshes, c.probes, c.due)
		}
	}

	// Refresh every 2s over a 7s window: about 3.5 writes per instance, against about 7
	// probes. Probes answered before the window's last second, a refresh interval plus
	// the stored second (3s) apart, are what calls for a refresh: in a 5s window those
	// were ~1s-spaced probes spanning ~3s, so whether two were 3s apart went with the
	// probes' jitter, and the 10 instances, started together, share one phase (a
	// fresh-clone run of fc3da58 got due 0 from 50 probes and 17 refresh writes). 7s
	// gives a ~5s span: always two.
	c := measure(2*time.Second, 7*time.Second, 0)
	check("refresh 2s", c)
	if c.due == 0 {
		t.Errorf("refresh 2s: the %d probes in 5s called for no refresh: the premise (probes more often than refreshes) does not hold", c.probes)
	}

	// A write budget of 2/s for 10 instances stretches a 1s refresh to 5s: about
	// 10 writes in 5s instead of about 50.
	check("refresh 1s, at most 2 writes/s", measure(time.Second, 5*time.Second, 2))

	// A long refresh: nothing changes, so nothing is written.
	c = measure(time.Hour, 3*time.Second, 0)
	t.Logf("refresh 1h: %d refresh writes, %d transitions and %d probes in 3s", c.refreshes, c.transitions, c.probes)
	if c.refreshes != 0 {
		t.Errorf("%d lastHeartbeat writes with a 1h refresh", c.refreshes)
	}
	if c.probes < n {
		t.Errorf("only %d probes of %d instances in 3s: the controller is not probing", c.probes, n)
	}
}

// spaced counts the times, in order, that are at least d after the previous one counted
// (the first counts): the most refreshes a refresh interval d allows.
func spaced(ts []time.Time, d time.Duration) int {
	n := 0
	var last time.Time
	for _, at := range ts {
		if n == 0 || at.Sub(last) >= d {
			n++
			last = at
		}
	}
	return n
}

func probesBefore(ts []time.Time, end time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(end) {
		i++
	}
	return ts[:i]
}

func envWatch(ctx context.Context, rv string) (watch.Interface, error) {
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: kubeclient.Scheme()})
	if err != nil {
		return nil, err
	}
	return wc.Watch(ctx, &slugwayv1.InstanceList{}, client.InNamespace("default"), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
}

// A restarted controller does not flap or rewrite statuses it agrees with.
func TestRestartKeepsStatus(t *testing.T) {
	b := newBackend(t, 0)
	claim(t, "restart")
	o := env.ControllerOptions()
	o.HeartbeatRefresh = time.Hour
	stop, err := env.StartController(o)
	if err != nil {
		t.Fatal(err)
	}
	inst := newInstance(t, "restart-1", "restart", b.URL, fastCheck())
	before := waitStatus(t, inst, slugwayv1.HealthHealthy)
	stop()

	stop, err = env.StartController(o)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	time.Sleep(time.Second)
	after := waitStatus(t, inst, slugwayv1.HealthHealthy)
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("restart rewrote an unchanged status: %+v -> %+v", before.Status, after.Status)
	}
}

// Expiry: an instance Unreachable for longer than ExpireAfter is deleted, with an Event.
func TestExpireUnreachable(t *testing.T) {
	startController(t, func(o *manager.Options) { o.ExpireAfter = 3 * time.Second })
	b := newBackend(t, 0)
	claim(t, "expiry")
	inst := newInstance(t, "expiry-1", "expiry", b.URL, fastCheck())
	waitStatus(t, inst, slugwayv1.HealthHealthy)
	b.set("fail")
	waitStatus(t, inst, slugwayv1.HealthUnreachable)
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), &slugwayv1.Instance{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v)", err)
	})
	// The recorder writes events in the background: the deletion can come first.
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if r := eventReasons(t, inst); !slices.Contains(r, "Expired") {
			return fmt.Errorf("no Expired event, only %v", r)
		}
		return nil
	})
}
