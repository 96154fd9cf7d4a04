package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/manager"
	"github.com/slugway/slugway/registry"
)

// podBackend is an HTTP server on a given loopback address that answers 200 on the
// health paths it is told to and 404 elsewhere, as a pod serving one service does.
type podBackend struct {
	addr  string
	srv   *http.Server
	mu    sync.Mutex
	paths []string
}

func startPodBackend(t *testing.T, addr string, paths ...string) *podBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &podBackend{addr: ln.Addr().String(), paths: paths}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		ok := slices.Contains(b.paths, r.URL.Path)
		b.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
		}
	})}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *podBackend) answer(path string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.paths = append(b.paths, path)
}

func checkOn(path string) slugwayv1.HealthCheck {
	hc := fastCheck()
	hc.Path = path
	return hc
}

func getInstance(ctx context.Context, inst *slugwayv1.Instance) (*slugwayv1.Instance, *metav1.Condition, error) {
	got := &slugwayv1.Instance{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
		return nil, nil, err
	}
	return got, apimeta.FindStatusCondition(got.Status.Conditions, slugwayv1.ConditionOwned), nil
}

// TestURLHoldGracePodIPReuse is the pod-IP-reuse story of issue #14: slug A's pod at
// 127.0.0.1:P is gone, and its Instance turns Unreachable; slug B's new pod gets the
// same address and registers it (spelled with a trailing slash). Until A has been
// Unreachable for --url-hold-grace, B is URLConflict and not routed; then B holds the
// URL (Owned, Ready) and A is Owned=False/URLReleased, with an Event, but not deleted.
// When A's probes succeed again, A does not take the URL back.
func TestURLHoldGracePodIPReuse(t *testing.T) {
	const grace = 6 * time.Second
	startController(t, func(o *manager.Options) { o.URLHoldGrace = grace })
	ctx := context.Background()
	claim(t, "squat-a")
	claim(t, "squat-b")

	podA := startPodBackend(t, "127.0.0.1:0", "/a-healthz")
	url := "http://" + podA.addr
	a := newInstance(t, "squat-a-1", "squat-a", url, checkOn("/a-healthz"))
	waitStatus(t, a, slugwayv1.HealthHealthy)
	waitOwned(t, a, metav1.ConditionTrue, slugwayv1.ReasonSlugClaimed)

	// A's pod dies.
	if err := podA.srv.Close(); err != nil {
		t.Fatal(err)
	}
	gotA := waitStatus(t, a, slugwayv1.HealthUnreachable)
	since, ok := registry.UnreachableSince(gotA)
	if !ok {
		t.Fatalf("no Unreachable-since on %+v", gotA.Status)
	}
	lapse := since.Add(grace)

	// B's pod gets A's address; it serves B's health path, not A's (404 there).
	podB := startPodBackend(t, podA.addr, "/b-healthz")
	b := newInstance(t, "squat-b-1", "squat-b", url+"/", checkOn("/b-healthz"))
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		got, owned, err := getInstance(ctx, b)
		if err != nil {
			return err
		}
		if owned != nil && owned.Status == metav1.ConditionTrue {
			if time.Now().Before(lapse) {
				t.Fatalf("B took the URL at %s, within A's grace (until %s)", time.Now().UTC(), lapse.UTC())
			}
			t.Fatalf("A's grace (until %s) ran out before B was seen in URLConflict: the test is too slow for a %s grace", lapse.UTC(), grace)
		}
		if owned == nil || owned.Reason != slugwayv1.ReasonURLConflict || got.Status.Status != slugwayv1.HealthHealthy {
			return fmt.Errorf("B is %s, Owned %+v; want Healthy and URLConflict", got.Status.Status, owned)
		}
		ready := apimeta.FindStatusCondition(got.Status.Conditions, slugwayv1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != slugwayv1.ReasonNotOwned {
			return fmt.Errorf("B in URLConflict is routable: Ready %+v", ready)
		}
		for _, w := range []string{"instance default/squat-a-1 of slug \"squat-a\"", "yields the URL at " + lapse.UTC().Format(time.RFC3339)} {
			if !strings.Contains(owned.Message, w) {
				return fmt.Errorf("URLConflict message %q does not say %q", owned.Message, w)
			}
		}
		return nil
	})

	// Once the grace is over, B holds the URL, no earlier.
	var bOwned *metav1.Condition
	testenv.Eventually(t, grace+10*time.Second, func(ctx context.Context) error {
		got, owned, err := getInstance(ctx, b)
		if err != nil {
			return err
		}
		bOwned = owned
		ready := apimeta.FindStatusCondition(got.Status.Conditions, slugwayv1.ConditionReady)
		if owned == nil || owned.Status != metav1.ConditionTrue || ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("B: Owned %+v, Ready %+v", owned, ready)
		}
		return nil
	})
	if bOwned.LastTransitionTime.Time.Before(lapse) {
		t.Errorf("B took the URL at %s, before A's grace ran out at %s", bOwned.LastTransitionTime.UTC(), lapse.UTC())
	}
	released := waitOwned(t, a, metav1.ConditionFalse, slugwayv1.ReasonURLReleased)
	for _, w := range []string{"went to instance default/squat-b-1 of slug \"squat-b\"", "Unreachable since " + since.UTC().Format(time.RFC3339), "--url-hold-grace (6s)"} {
		if !strings.Contains(released.Message, w) {
			t.Errorf("URLReleased message %q does not say %q", released.Message, w)
		}
	}
	// The recorder writes events in the background: the status can come first.
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if r := eventReasons(t, gotA); !slices.Contains(r, slugwayv1.ReasonURLReleased) {
			return fmt.Errorf("no URLReleased event on A, only %v", r)
		}
		return nil
	})

	// A's health path answers again (A came back, or B's pod answers it): A is Healthy
	// but stays released, and B keeps the URL.
	podB.answer("/a-healthz")
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		got, owned, err := getInstance(ctx, a)
		if err != nil {
			return err
		}
		if got.Status.Status != slugwayv1.HealthHealthy {
			return fmt.Errorf("A is %s", got.Status.Status)
		}
		if owned == nil || owned.Reason != slugwayv1.ReasonURLReleased {
			return fmt.Errorf("A came back and took the URL back: Owned %+v", owned)
		}
		return nil
	})
	// Make B reconcile again after the controller saw A Healthy (a spec change; its
	// event follows A's in the same watch), and check it still holds the URL.
	var gen int64
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got, _, err := getInstance(ctx, b)
		if err != nil {
			return err
		}
		got.Spec.HealthCheck.Timeout = ms(400 * time.Millisecond)
		if err := env.Client.Update(ctx, got); err != nil {
			return err
		}
		gen = got.Generation
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		got, owned, err := getInstance(ctx, b)
		if err != nil {
			return err
		}
		if got.Status.ObservedGeneration < gen {
			return fmt.Errorf("B's generation %d not reconciled yet (observed %d)", gen, got.Status.ObservedGeneration)
		}
		if owned == nil || owned.Status != metav1.ConditionTrue {
			return errors.New("B lost the URL after A came back: " + fmt.Sprint(owned))
		}
		return nil
	})
	if _, owned, err := getInstance(ctx, a); err != nil || owned == nil || owned.Reason != slugwayv1.ReasonURLReleased {
		t.Errorf("A after B's reconcile: Owned %+v (err %v), want URLReleased", owned, err)
	}
}
