// Package admission tests slug ownership end to end: a real kube-apiserver and etcd,
// the webhook configurations from config/webhook (failurePolicy Fail), and the real
// controller (which serves the webhooks) running in-process. Several identities act
// on the same objects; RBAC lets every authenticated user write slugway.io objects,
// so everything these tests see refused is refused by admission or the CRD schema.
package admission_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/manager"
	"github.com/slugway/slugway/netguard"
)

var (
	env *testenv.Env
	// alice and bob own slugs, mallory is the impostor, root is in slugway:admins.
	alice, bob, mallory, root client.Client
	// resolver is the SSRF guard's DNS, which tests may rewrite to simulate rebinding.
	resolver = &switchResolver{answers: map[string]string{}}

	ctrlMu   sync.Mutex
	stopCtrl func()
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	var err error
	env, err = testenv.Start(true)
	if err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	ctx := context.Background()
	if err := env.GrantSlugwayAccess(ctx); err != nil {
		return 0, err
	}
	for _, ns := range []string{"team-a", "team-b"} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return 0, err
		}
	}
	users := []struct {
		c      *client.Client
		name   string
		groups []string
	}{{&alice, "alice", nil}, {&bob, "bob", nil}, {&mallory, "mallory", nil}, {&root, "root", []string{"slugway:admins"}}}
	for _, u := range users {
		cfg, err := env.User(u.name, u.groups...)
		if err != nil {
			return 0, err
		}
		cfg.QPS, cfg.Burst = 200, 400 // client-side throttling would only slow the tests down
		if *u.c, err = client.New(cfg, client.Options{Scheme: kubeclient.Scheme()}); err != nil {
			return 0, err
		}
	}
	if err := startController(); err != nil {
		return 0, err
	}
	defer stopController()
	return m.Run(), nil
}

// controllerOptions are the test defaults plus the SSRF guard, with loopback allowed
// (the test backends listen on 127.0.0.1) and the test's resolver.
func controllerOptions() (manager.Options, error) {
	o := env.ControllerOptions()
	g, err := netguard.New(netguard.DefaultDeny, true)
	if err != nil {
		return o, err
	}
	g.Resolver = resolver
	o.CheckURL, o.Dial = g.CheckURL, g.DialContext
	return o, nil
}

// startController starts the controller unless it is running.
func startController() error {
	ctrlMu.Lock()
	defer ctrlMu.Unlock()
	if stopCtrl != nil {
		return nil
	}
	o, err := controllerOptions()
	if err != nil {
		return err
	}
	stop, err := env.StartController(o)
	if err != nil {
		return err
	}
	stopCtrl = stop
	return nil
}

// controllerWith runs the controller with options changed by set for the rest of
// the test, then restarts it with the defaults.
func controllerWith(t *testing.T, set func(*manager.Options)) {
	t.Helper()
	stopController()
	o, err := controllerOptions()
	if err != nil {
		t.Fatal(err)
	}
	set(&o)
	stop, err := env.StartController(o)
	if err != nil {
		t.Fatal(err)
	}
	ctrlMu.Lock()
	stopCtrl = stop
	ctrlMu.Unlock()
	t.Cleanup(func() {
		stopController()
		if err := startController(); err != nil {
			t.Fatal(err)
		}
	})
}

func stopController() {
	ctrlMu.Lock()
	defer ctrlMu.Unlock()
	if stopCtrl != nil {
		stopCtrl()
		stopCtrl = nil
	}
}

// switchResolver maps names to one address each; unknown names do not resolve.
type switchResolver struct {
	mu      sync.Mutex
	answers map[string]string
}

func (r *switchResolver) set(host, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[host] = addr
}

func (r *switchResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

var port atomic.Int32

// freshURL is a loopback URL no other test uses; nothing listens there, so probes fail fast.
func freshURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/", 20000+port.Add(1))
}

func instance(ns, name, slug, url string) *slugwayv1.Instance {
	return &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       slugwayv1.InstanceSpec{Slug: slug, URL: url},
	}
}

// claim creates the slug as c's user, leaving spec.owner for the mutating webhook to fill.
func claim(t *testing.T, c client.Client, slug string) *slugwayv1.ServiceAccount {
	t.Helper()
	sa := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: slugwayv1.ServiceAccountSpec{DisplayName: slug}}
	if err := c.Create(context.Background(), sa); err != nil {
		t.Fatalf("claiming slug %q: %v", slug, err)
	}
	return sa
}

// namespace creates a namespace for one test's objects, so that what other tests
// leave in team-a and team-b cannot show up in what it lists or deletes by collection.
func namespace(t *testing.T, name string) string {
	t.Helper()
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// deleteAtCleanup deletes obj (as the envtest admin) when the test ends and waits
// until it is gone, so that the next test does not see it.
func deleteAtCleanup(t *testing.T, obj client.Object) {
	t.Helper()
	obj = obj.DeepCopyObject().(client.Object)
	t.Cleanup(func() {
		if err := env.Client.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
			return
		}
		testenv.Eventually(t, 15*time.Second, func(ctx context.Context) error {
			err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("%s/%s still exists", obj.GetNamespace(), obj.GetName())
			}
			return err
		})
	})
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// denied fails unless err is a refusal whose message contains every want.
func denied(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: allowed, want denied", what)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%s: error %q does not say %q", what, err, w)
		}
	}
}

func allowed(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// reconciled waits until the controller has written the instance's Owned condition,
// which also means the controller's cache (used for the URL-conflict check) holds it.
func reconciled(t *testing.T, inst *slugwayv1.Instance) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		var got slugwayv1.Instance
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), &got); err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == slugwayv1.ConditionOwned {
				return nil
			}
		}
		return fmt.Errorf("no Owned condition yet on %s/%s", inst.Namespace, inst.Name)
	})
}

func objectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

// updateAs reads obj as c's user, applies mutate and updates it, retrying when the
// controller wrote the object in between (a 409 says nothing about admission).
func updateAs[T client.Object](c client.Client, obj T, mutate func(T)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate(obj)
		return c.Update(context.Background(), obj)
	})
}

// updateStatusAs is updateAs for the status subresource.
func updateStatusAs[T client.Object](c client.Client, obj T, mutate func(T)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate(obj)
		return c.Status().Update(context.Background(), obj)
	})
}
