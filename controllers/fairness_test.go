package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/tarpit"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/manager"
	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/registry"
)

// TestProberIsFair is issue #14's starvation case on the real apiserver: 64 instances
// of one slug point at a tarpit with the longest timeout the CRD allows less a little,
// enough to hold all 64 probe workers of an unfair prober for 20s. A new instance of
// another slug must still turn Healthy within its interval plus a small margin, and the
// tarpit must never hold more than the slug's share (a quarter: 16) of the workers.
func TestProberIsFair(t *testing.T) {
	const workers, tarpitted = 64, 64
	startController(t, func(o *manager.Options) { o.ProbeConcurrency = workers })
	tp := tarpit.New(t)
	claim(t, "tarpit")
	slow := slugwayv1.HealthCheck{Interval: ms(25 * time.Second), Timeout: ms(20 * time.Second), UnhealthyThreshold: 1, HealthyThreshold: 1}
	for i := range tarpitted {
		newInstance(t, fmt.Sprintf("tarpit-%d", i), "tarpit", fmt.Sprintf("http://%s/i%d", tp.Addr(), i), slow)
	}
	share := int(workers * 0.25)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if open, _ := tp.Counts(); open < share {
			return fmt.Errorf("the tarpit holds %d probes, want the slug's full share of %d before the punctual instance arrives", open, share)
		}
		return nil
	})

	b := newBackend(t, 0)
	claim(t, "punctual")
	hc := fastCheck()
	hc.Interval = ms(2 * time.Second)
	start := time.Now()
	inst := newInstance(t, "punctual-1", "punctual", b.URL, hc)
	margin := 3 * time.Second
	got := &slugwayv1.Instance{}
	testenv.Eventually(t, hc.Interval.Duration+margin, func(ctx context.Context) error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
			return err
		}
		if got.Status.Status != slugwayv1.HealthHealthy {
			return fmt.Errorf("status %q after %s, want Healthy within the interval %s plus %s", got.Status.Status, time.Since(start).Round(time.Millisecond), hc.Interval.Duration, margin)
		}
		return nil
	})
	t.Logf("the punctual instance turned Healthy %s after its creation, with %d tarpitted probes in flight", time.Since(start).Round(time.Millisecond), share)
	if _, peak := tp.Counts(); peak > share {
		t.Fatalf("the tarpit held %d probes at once, more than the slug's share of %d", peak, share)
	}
}

// TestChangedURLIsUnknownUntilProbed: moving a Healthy instance to a new URL stops
// routing the old one at once (the proxy's route rules ignore an Owned condition of an
// older generation), and the new one is not routed until its first successful probe:
// status turns Unknown, not the old Healthy.
func TestChangedURLIsUnknownUntilProbed(t *testing.T) {
	startController(t, nil)
	ctx := context.Background()
	b := newBackend(t, 0)
	tp := tarpit.New(t)
	sa := claim(t, "moving")
	hc := fastCheck()
	hc.Timeout = ms(900 * time.Millisecond)
	inst := newInstance(t, "moving-1", "moving", b.URL, hc)
	waitStatus(t, inst, slugwayv1.HealthHealthy)
	routed := func(i *slugwayv1.Instance) int {
		return len(routes.BuildSlug(sa, []slugwayv1.Instance{*i}).Endpoints)
	}

	got := &slugwayv1.Instance{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
		t.Fatal(err)
	}
	if routed(got) != 1 {
		t.Fatalf("the Healthy instance is not routed: %+v", got.Status)
	}
	got.Spec.URL = "http://" + tp.Addr() + "/moved"
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if n := routed(got); n != 0 {
		t.Fatalf("right after the URL change the instance is routed (%d endpoints), to its new URL, before the controller looked at it", n)
	}
	// The controller's first word on the new generation is Unknown: the tarpit never answers.
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
			return err
		}
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("status is for generation %d, the spec is at %d", got.Status.ObservedGeneration, got.Generation)
		}
		if got.Status.Status == slugwayv1.HealthHealthy {
			t.Fatalf("the new URL %s was reported Healthy before any probe could succeed there: %+v", got.Spec.URL, got.Status)
		}
		return nil
	})
	if n := routed(got); n != 0 || (got.Status.Status != slugwayv1.HealthUnknown && got.Status.Status != slugwayv1.HealthUnreachable) {
		t.Fatalf("after the change: status %q and %d routed endpoints; want Unknown (or Unreachable once the probe timed out) and none", got.Status.Status, n)
	}
	waitStatus(t, inst, slugwayv1.HealthUnreachable)
	// Back to a URL that answers: routed again once probed.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
		t.Fatal(err)
	}
	got.Spec.URL = b.URL + "/back"
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	got = waitStatus(t, inst, slugwayv1.HealthHealthy)
	if routed(got) != 1 {
		t.Fatalf("the probed new URL is not routed: %+v", got.Status)
	}
}

// TestOrphanOfAnEarlierClaimIsNotInherited: an Instance that outlived its slug's
// release (here: the ServiceAccount had no finalizer yet, as when an admin strips it)
// carries the old claim's UID, so the next claim of the same name does not own it and
// the proxy does not route it, although it answers its probes.
func TestOrphanOfAnEarlierClaimIsNotInherited(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t, 0)
	old := claim(t, "inherit") // no controller yet: no finalizer
	inst := &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Name: "inherit-1", Namespace: "default", Labels: map[string]string{registry.LabelClaimUID: string(old.UID)}},
		Spec:       slugwayv1.InstanceSpec{Slug: "inherit", URL: b.URL, HealthCheck: fastCheck()},
	}
	if err := env.Client.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), inst) })
	// What a forced release leaves behind: the ServiceAccount gone without its finalizer
	// having run (a controller of an earlier test may have added it).
	if err := env.Client.Patch(ctx, old, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(old), &slugwayv1.ServiceAccount{})
		if err == nil {
			return fmt.Errorf("the old claim still exists")
		}
		return client.IgnoreNotFound(err)
	})
	fresh := claim(t, "inherit")
	startController(t, nil)
	cond := waitOwned(t, inst, metav1.ConditionFalse, slugwayv1.ReasonClaimMismatch)
	if !strings.Contains(cond.Message, "earlier claim") || !strings.Contains(cond.Message, string(fresh.UID)) {
		t.Errorf("message does not say why: %q", cond.Message)
	}
	got := &slugwayv1.Instance{}
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error { // it answers, and is still not Ready
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
			return err
		}
		if got.Status.Status != slugwayv1.HealthHealthy {
			return fmt.Errorf("status %q, want Healthy", got.Status.Status)
		}
		if findReady(got).Status != metav1.ConditionFalse {
			t.Fatalf("the orphan is Ready under the new claim: %+v", got.Status.Conditions)
		}
		return nil
	})
	if n := len(routes.BuildSlug(fresh, []slugwayv1.Instance{*got}).Endpoints); n != 0 {
		t.Fatalf("the proxy would route the orphan under the new claim")
	}
}
