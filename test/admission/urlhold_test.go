package admission_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/manager"
	"github.com/slugway/slugway/registry"
)

// serveHealth serves 200 on path (404 elsewhere) on addr until the test ends or stop is called.
func serveHealth(t *testing.T, addr, path string) (bound string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(http.ResponseWriter, *http.Request) {})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	stop = func() { _ = srv.Close() }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func fastHealth(path string) slugwayv1.HealthCheck {
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	return slugwayv1.HealthCheck{Type: slugwayv1.HealthCheckHTTP, Path: path, Interval: d(time.Second), Timeout: d(500 * time.Millisecond), HealthyThreshold: 1, UnhealthyThreshold: 2}
}

// TestURLHoldGraceAtAdmission: the webhook refuses bob's registration of the URL of
// alice's dead instance until that instance has been Unreachable for
// --url-hold-grace, saying when it will be free; then it admits it, bob's instance
// becomes the holder, and alice's is marked URLReleased (not deleted).
func TestURLHoldGraceAtAdmission(t *testing.T) {
	const grace = 4 * time.Second
	ctx := context.Background()
	controllerWith(t, func(o *manager.Options) { o.URLHoldGrace = grace })
	claim(t, alice, "hold-a-svc")
	claim(t, bob, "hold-b-svc")

	addr, stopA := serveHealth(t, "127.0.0.1:0", "/a-healthz")
	url := "http://" + addr
	held := instance("team-a", "hold-a", "hold-a-svc", url)
	held.Spec.HealthCheck = fastHealth("/a-healthz")
	mustCreate(t, alice, held)
	t.Cleanup(func() { _ = env.Client.Delete(ctx, held) })
	waitHealth(t, held, slugwayv1.HealthHealthy)
	stopA() // alice's pod is gone
	gotA := waitHealth(t, held, slugwayv1.HealthUnreachable)
	since, _ := registry.UnreachableSince(gotA)
	lapse := since.Add(grace)

	// bob's pod gets the address, and registers it spelled with a trailing slash.
	serveHealth(t, addr, "/b-healthz")
	taker := func() *slugwayv1.Instance {
		i := instance("team-b", "hold-b", "hold-b-svc", url+"/")
		i.Spec.HealthCheck = fastHealth("/b-healthz")
		return i
	}
	// The webhook reads the controller's cache, which may show alice's instance Healthy
	// for a moment longer: wait for the refusal that knows it is Unreachable.
	var refusal error
	testenv.Eventually(t, 5*time.Second, func(ctx context.Context) error {
		refusal = bob.Create(ctx, taker())
		if refusal == nil {
			if time.Now().Before(lapse) {
				t.Fatalf("bob's registration admitted at %s, within alice's grace (until %s)", time.Now().UTC(), lapse.UTC())
			}
			t.Fatalf("alice's grace (until %s) ran out before bob's registration was refused: the test is too slow for a %s grace", lapse.UTC(), grace)
		}
		if !strings.Contains(refusal.Error(), "Unreachable since") {
			return refusal
		}
		return nil
	})
	denied(t, "bob registers the URL within alice's grace", refusal,
		`is already served by instance team-a/hold-a of slug "hold-a-svc"`, "one URL belongs to one slug",
		"Unreachable since "+since.UTC().Format(time.RFC3339), "yields the URL at "+lapse.UTC().Format(time.RFC3339))
	testenv.Eventually(t, grace+10*time.Second, func(ctx context.Context) error {
		err := bob.Create(ctx, taker())
		if err != nil && !strings.Contains(err.Error(), "yields the URL at") {
			t.Fatalf("bob's registration refused for another reason: %v", err)
		}
		return err
	})
	t.Cleanup(func() { _ = env.Client.Delete(ctx, taker()) })
	b := taker()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
		t.Fatal(err)
	}
	// The apiserver stamps creationTimestamp (whole seconds) just before it calls the
	// validating webhook, so an admission right at the lapse may carry the second before.
	if created := b.CreationTimestamp.Time; created.Before(lapse.Add(-time.Second)) {
		t.Errorf("admitted at %s, before alice's grace ran out at %s", created.UTC(), lapse.UTC())
	}
	testenv.Eventually(t, 15*time.Second, func(ctx context.Context) error {
		var got slugwayv1.Instance
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), &got); err != nil {
			return err
		}
		ready := apimeta.FindStatusCondition(got.Status.Conditions, slugwayv1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("bob's instance is not routable: %+v", got.Status)
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		var got slugwayv1.Instance
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(held), &got); err != nil {
			return err // also if it was deleted: the rule keeps it
		}
		if owned := apimeta.FindStatusCondition(got.Status.Conditions, slugwayv1.ConditionOwned); owned == nil || owned.Reason != slugwayv1.ReasonURLReleased ||
			!strings.Contains(owned.Message, `went to instance team-b/hold-b of slug "hold-b-svc"`) {
			return fmt.Errorf("alice's instance: Owned %+v, want URLReleased naming bob's", owned)
		}
		return nil
	})
	// A third slug is refused: bob's instance holds the URL now, alice's released one does not count.
	claim(t, alice, "hold-c-svc")
	denied(t, "alice registers the URL under a third slug", alice.Create(ctx, instance("team-a", "hold-c", "hold-c-svc", url)),
		`is already served by instance team-b/hold-b of slug "hold-b-svc"`)
}

// waitHealth waits until the instance's status.status is want.
func waitHealth(t *testing.T, inst *slugwayv1.Instance, want slugwayv1.Health) *slugwayv1.Instance {
	t.Helper()
	got := &slugwayv1.Instance{}
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
			return err
		}
		if got.Status.Status != want {
			return fmt.Errorf("status %q, want %q", got.Status.Status, want)
		}
		return nil
	})
	return got
}
