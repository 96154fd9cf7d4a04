package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
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

// The write budget: a probe every 100ms must not mean a write every 100ms. Status is
// written on transitions plus one lastHeartbeat refresh per HeartbeatRefresh, and not
// at all when nothing changes and the refresh is long.
func TestWriteBudget(t *testing.T) {
	const n = 10
	b := newBackend(t, 0)
	ctx := context.Background()
	claim(t, "budget")
	// Probe every second (the CRD's minimum); generous timeout and thresholds so that a
	// loaded machine causes no transitions (each would be a legitimate write) and only
	// the refresh writes remain.
	hc := fastCheck()
	hc.Interval, hc.Timeout, hc.DegradedAfter, hc.UnhealthyThreshold = ms(time.Second), ms(500*time.Millisecond), ms(500*time.Millisecond), 5

	measure := func(refresh, window time.Duration, budget float64) (writes, probes int64) {
		t.Helper()
		stopCh := make(chan struct{})
		o := env.ControllerOptions()
		o.HeartbeatRefresh = refresh
		o.MaxHeartbeatWrites = budget
		stop, err := env.StartController(o)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		defer close(stopCh)
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
		w, err := envWatch(ctx, list.ResourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		before := b.hits.Load()
		deadline := time.After(window)
		for {
			select {
			case ev := <-w.ResultChan():
				if inst, ok := ev.Object.(*slugwayv1.Instance); ok && ev.Type == watch.Modified && inst.Spec.Slug == "budget" {
					writes++
					if testing.Verbose() {
						t.Logf("write: %s %+v", inst.Name, inst.Status)
					}
				}
			case <-deadline:
				return writes, b.hits.Load() - before
			}
		}
	}

	// Refresh every 4s over an 8s window: about 2 writes per instance, against about 8 probes.
	writes, probes := measure(4*time.Second, 8*time.Second, 0)
	t.Logf("refresh 4s: %d status writes and %d probes for %d healthy instances in 8s", writes, probes, n)
	if writes > n*(8/4+1) {
		t.Errorf("%d writes for %d instances in 8s with a 4s refresh: more than one per refresh", writes, n)
	}
	if writes < n {
		t.Errorf("only %d writes: the heartbeat refresh did not happen", writes)
	}
	if probes < 2*writes {
		t.Errorf("%d probes vs %d writes: writes are not decoupled from probes", probes, writes)
	}

	// A long refresh: nothing changes, so nothing is written.
	// A write budget of 2/s for 10 instances stretches a 1s refresh to 5s: about
	// 10 writes in 5s instead of about 50.
	writes, _ = measure(time.Second, 5*time.Second, 2)
	t.Logf("refresh 1s, at most 2 writes/s: %d status writes in 5s", writes)
	if writes > 2*5+n {
		t.Errorf("%d writes in 5s under a budget of 2/s", writes)
	}

	writes, probes = measure(time.Hour, 3*time.Second, 0)
	t.Logf("refresh 1h: %d status writes and %d probes in 3s", writes, probes)
	if writes != 0 {
		t.Errorf("%d status writes while nothing changed", writes)
	}
	if probes < n*2 {
		t.Errorf("only %d probes ran", probes)
	}
}

func envWatch(ctx context.Context, rv string) (watch.Interface, error) {
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: manager.Scheme()})
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
	if r := eventReasons(t, inst); !slices.Contains(r, "Expired") {
		t.Errorf("no Expired event, only %v", r)
	}
}
