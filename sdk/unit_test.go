package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/kubeclient"
)

func TestInstanceName(t *testing.T) {
	long := strings.Repeat("p", 80)
	cases := []struct{ slug, pod, url, want string }{
		{"skeleton-svc", "skeleton-svc-5d8f7c9b4-x2x9z", "http://10.0.0.1:9311", "skeleton-svc-skeleton-svc-5d8f7c9b4-x2x9z"},
		{"svc", "", "http://10.0.0.1:9311", "svc-" + shortHash("http://10.0.0.1:9311", 10)},
	}
	for _, c := range cases {
		if got := InstanceName(c.slug, c.pod, c.url); got != c.want {
			t.Errorf("InstanceName(%q, %q, %q) = %q, want %q", c.slug, c.pod, c.url, got, c.want)
		}
	}
	// Spellings of one URL give one name; another URL another.
	a := InstanceName("svc", "", "http://Host:80/")
	if b := InstanceName("svc", "", "HTTP://host"); a != b {
		t.Errorf("%q != %q for the same URL", a, b)
	}
	if c := InstanceName("svc", "", "http://host:81"); a == c {
		t.Error("different URLs gave the same name")
	}
	// Long names stay within 63 characters, readable, and distinct.
	n1, n2 := InstanceName("svc", long+"a", ""), InstanceName("svc", long+"b", "")
	if len(n1) > 63 || n1 == n2 || !strings.HasPrefix(n1, "svc-ppp") {
		t.Errorf("long names %q and %q", n1, n2)
	}
	if n := InstanceName("svc", strings.Repeat("a", 49)+"-"+strings.Repeat("b", 20), ""); strings.Contains(n, "--") || len(n) > 63 {
		t.Errorf("cut name %q ends badly", n)
	}
}

func TestDefaultsFromEnvironment(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	t.Setenv(EnvSelfURL, "http://10.1.2.3:9311")
	t.Setenv(EnvPodName, "web-1")
	t.Setenv(EnvPodNamespace, "team-a")
	t.Setenv(EnvPodUID, "0b5a-uid")
	r, err := newRegistration(Options{Slug: "web", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	d := r.desired
	if d.Spec.URL != "http://10.1.2.3:9311" || d.Namespace != "team-a" || d.Name != "web-web-1" {
		t.Fatalf("instance %s/%s url %s", d.Namespace, d.Name, d.Spec.URL)
	}
	if len(d.OwnerReferences) != 1 || d.OwnerReferences[0].UID != "0b5a-uid" || d.OwnerReferences[0].Kind != "Pod" {
		t.Fatalf("ownerReferences %+v", d.OwnerReferences)
	}
	if r.interval != 30*time.Second || r.beat {
		t.Fatalf("probe mode: interval %s beat %v", r.interval, r.beat)
	}

	// Options win over the environment; heartbeat mode renews at a third of the TTL.
	t.Setenv(EnvPodUID, "")
	r, err = newRegistration(Options{Slug: "web", URL: "http://x", Namespace: "ns", PodName: "p", Config: cfg, HealthCheck: Heartbeat(9 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if r.desired.Spec.URL != "http://x" || r.desired.Namespace != "ns" || r.desired.Name != "web-p" {
		t.Fatalf("options ignored: %+v", r.desired.ObjectMeta)
	}
	if len(r.desired.OwnerReferences) != 0 {
		t.Fatal("no ownerReference without the pod's UID")
	}
	if !r.beat || r.interval != 3*time.Second {
		t.Fatalf("heartbeat mode: interval %s", r.interval)
	}

	// Namespace falls back to the in-cluster file, then "default".
	t.Setenv(EnvPodNamespace, "")
	file := filepath.Join(t.TempDir(), "namespace")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := inClusterNamespaceFile
	defer func() { inClusterNamespaceFile = old }()
	inClusterNamespaceFile = file
	if r, _ = newRegistration(Options{Slug: "web", Config: cfg}); r.key.Namespace != "from-file" {
		t.Fatalf("namespace %q, want from-file", r.key.Namespace)
	}
	inClusterNamespaceFile = filepath.Join(t.TempDir(), "absent")
	if r, _ = newRegistration(Options{Slug: "web", Config: cfg}); r.key.Namespace != "default" {
		t.Fatalf("namespace %q, want default", r.key.Namespace)
	}

	t.Setenv(EnvSelfURL, "")
	if _, err := newRegistration(Options{Slug: "web", Config: cfg}); err == nil || !strings.Contains(err.Error(), EnvSelfURL) {
		t.Fatalf("no URL: %v", err)
	}
}

func TestHeartbeatInterval(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		30 * time.Second: 10 * time.Second,
		4 * time.Second:  1333333333,
		2 * time.Second:  500 * time.Millisecond,
		time.Second:      200 * time.Millisecond,
	} {
		if got := heartbeatInterval(ttl); got != want {
			t.Errorf("heartbeatInterval(%s) = %s, want %s", ttl, got, want)
		}
	}
}

func TestIsTransient(t *testing.T) {
	gr := schema.GroupResource{Group: "slugway.io", Resource: "instances"}
	transient := []error{
		apierrors.NewServiceUnavailable("etcd is down"),
		apierrors.NewInternalError(errors.New(`failed calling webhook "vinstance.slugway.io": connection refused`)),
		apierrors.NewTooManyRequests("slow down", 1),
		apierrors.NewTimeoutError("timeout", 1),
		apierrors.NewConflict(gr, "x", errors.New("modified")),
		fmt.Errorf("Get \"https://10.0.0.1/apis\": %w", errors.New("connection refused")),
	}
	for _, err := range transient {
		if !IsTransient(err) {
			t.Errorf("IsTransient(%v) = false", err)
		}
	}
	permanentErrs := []error{
		apierrors.NewForbidden(gr, "x", errors.New("not the owner")),
		apierrors.NewInvalid(schema.GroupKind{Group: "slugway.io", Kind: "Instance"}, "x", nil),
		apierrors.NewBadRequest("bad"),
		apierrors.NewUnauthorized("who are you"),
		&meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "slugway.io", Kind: "Instance"}},
		context.Canceled,
		permanent(&SlugOwnedError{Slug: "x", Owner: "a", User: "b"}),
	}
	for _, err := range permanentErrs {
		if IsTransient(err) {
			t.Errorf("IsTransient(%v) = true", err)
		}
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	for range 50 {
		b := newBackoff(100*time.Millisecond, time.Second)
		for attempt := 1; attempt <= 10; attempt++ {
			lo := min(100*time.Millisecond<<(attempt-1), time.Second)
			if d := b.Step(); d < lo || d > lo+lo/10 {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, lo, lo+lo/10)
			}
		}
	}
}

// The create race: our Get says the slug is free, but someone claims it before our
// Create lands. The AlreadyExists must lead to a second look, not to a failure or a
// silent success.
func TestClaimRaceRereadsTheWinner(t *testing.T) {
	for _, tc := range []struct {
		winner  string
		wantErr bool
	}{{"someone-else", true}, {"me", false}} {
		t.Run(tc.winner, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(kubeclient.Scheme()).WithInterceptorFuncs(interceptor.Funcs{
				Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if _, ok := obj.(*slugwayv1.ServiceAccount); !ok {
						return c.Create(ctx, obj, opts...)
					}
					winner := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: obj.GetName()}, Spec: slugwayv1.ServiceAccountSpec{Owner: tc.winner}}
					if err := c.Create(ctx, winner); err != nil {
						return err
					}
					return apierrors.NewAlreadyExists(schema.GroupResource{Group: "slugway.io", Resource: "serviceaccounts"}, obj.GetName())
				},
			}).Build()
			r := &Registration{c: c, log: logr.Discard(), slug: "svc", user: "me"}
			err := r.claim(context.Background(), "Svc")
			var owned *SlugOwnedError
			if tc.wantErr != errors.As(err, &owned) {
				t.Fatalf("claim: %v", err)
			}
			if tc.wantErr && owned.Owner != "someone-else" {
				t.Fatalf("owner %q", owned.Owner)
			}
		})
	}
}
