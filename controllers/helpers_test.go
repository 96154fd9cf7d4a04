package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/manager"
)

// backend is a real HTTP server whose health can be switched.
type backend struct {
	*httptest.Server
	mode  atomic.Value // "ok", "fail", "slow"
	delay time.Duration
	hits  atomic.Int64

	mu     sync.Mutex
	probes map[string][]time.Time // by request path: when each answer was sent
}

func newBackend(t *testing.T, delay time.Duration) *backend {
	b := &backend{delay: delay, probes: map[string][]time.Time{}}
	b.mode.Store("ok")
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		switch b.mode.Load() {
		case "fail":
			w.WriteHeader(http.StatusInternalServerError)
		case "slow":
			time.Sleep(b.delay)
		}
		b.mu.Lock()
		b.probes[r.URL.Path] = append(b.probes[r.URL.Path], time.Now())
		b.mu.Unlock()
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) set(mode string) { b.mode.Store(mode) }

// probesOf returns when path was answered between from and to.
func (b *backend) probesOf(path string, from, to time.Time) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []time.Time
	for _, at := range b.probes[path] {
		if !at.Before(from) && at.Before(to) {
			out = append(out, at)
		}
	}
	return out
}

// startController runs the real controller with the given tweaks for the duration of the test.
func startController(t *testing.T, tweak func(*manager.Options)) {
	t.Helper()
	o := env.ControllerOptions()
	if tweak != nil {
		tweak(&o)
	}
	stop, err := env.StartController(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

func claim(t *testing.T, slug string) *slugwayv1.ServiceAccount {
	t.Helper()
	sa := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: slugwayv1.ServiceAccountSpec{Owner: "owner-of-" + slug}}
	if err := env.Client.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	return sa
}

func ms(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// fastCheck probes as often as the CRD allows (every second), so tests see
// transitions within a few seconds. The first probe runs at once.
func fastCheck() slugwayv1.HealthCheck {
	return slugwayv1.HealthCheck{
		Type:               slugwayv1.HealthCheckHTTP,
		Path:               "/healthz",
		Interval:           ms(time.Second),
		Timeout:            ms(500 * time.Millisecond),
		DegradedAfter:      ms(100 * time.Millisecond),
		HealthyThreshold:   1,
		UnhealthyThreshold: 2,
	}
}

func newInstance(t *testing.T, name, slug, url string, hc slugwayv1.HealthCheck) *slugwayv1.Instance {
	t.Helper()
	inst := &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       slugwayv1.InstanceSpec{Slug: slug, URL: url, HealthCheck: hc},
	}
	if err := env.Client.Create(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), inst) })
	return inst
}

// waitStatus waits until the instance has the given health and Ready status.
func waitStatus(t *testing.T, inst *slugwayv1.Instance, want slugwayv1.Health) *slugwayv1.Instance {
	t.Helper()
	got := &slugwayv1.Instance{}
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
			return err
		}
		if got.Status.Status != want {
			return fmt.Errorf("status %q, want %q; conditions %+v", got.Status.Status, want, got.Status.Conditions)
		}
		ready := apimeta.FindStatusCondition(got.Status.Conditions, slugwayv1.ConditionReady)
		wantReady := want == slugwayv1.HealthHealthy || want == slugwayv1.HealthDegraded
		if ready == nil || (ready.Status == metav1.ConditionTrue) != wantReady {
			return fmt.Errorf("Ready condition %+v for status %s", ready, want)
		}
		return nil
	})
	return got
}

func waitOwned(t *testing.T, inst *slugwayv1.Instance, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var cond *metav1.Condition
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		got := &slugwayv1.Instance{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), got); err != nil {
			return err
		}
		cond = apimeta.FindStatusCondition(got.Status.Conditions, slugwayv1.ConditionOwned)
		if cond == nil || cond.Status != status || cond.Reason != reason {
			return fmt.Errorf("Owned condition %+v, want %s/%s", cond, status, reason)
		}
		return nil
	})
	return cond
}

// events returns the reasons of the Events recorded for an object.
func eventReasons(t *testing.T, obj client.Object) []string {
	t.Helper()
	var list corev1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(obj.GetNamespace())); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.UID == obj.GetUID() {
			out = append(out, e.Reason)
		}
	}
	return out
}
