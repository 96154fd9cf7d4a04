// Package integration runs the real proxy (proxy.New + Run) against a real
// kube-apiserver and etcd (envtest) and real backends. No controller runs: the
// tests write Instance status themselves, as the controller would.
package integration

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/proxy"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, testenv.Suite{}) }

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// startProxy runs the real proxy against envtest until the test ends, and waits until it is ready.
func startProxy(t testing.TB, o proxy.Options) *proxy.Proxy {
	t.Helper()
	if o.Listener == nil {
		o.Listener = listen(t)
	}
	o.AdminListener = listen(t)
	p, err := proxy.New(env.Config, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy.Run: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !p.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("proxy not ready within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

func createSlug(t testing.TB, slug string) {
	t.Helper()
	sa := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: slug}, Spec: slugwayv1.ServiceAccountSpec{Owner: "test"}}
	if err := env.Client.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), sa) })
}

// createInstance creates an Instance and writes its status as the controller would.
func createInstance(t testing.TB, slug, name, url string, health slugwayv1.Health, proto slugwayv1.AppProtocol) *slugwayv1.Instance {
	t.Helper()
	inst := &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       slugwayv1.InstanceSpec{Slug: slug, URL: url, AppProtocol: proto},
	}
	if err := env.Client.Create(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), inst) })
	setHealth(t, inst, health)
	return inst
}

func setHealth(t testing.TB, inst *slugwayv1.Instance, health slugwayv1.Health) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(inst), inst); err != nil {
		t.Fatal(err)
	}
	inst.Status.Status = health
	apimeta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{
		Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonSlugClaimed, ObservedGeneration: inst.Generation,
	})
	if err := env.Client.Status().Update(ctx, inst); err != nil {
		t.Fatal(err)
	}
}

// waitRoute waits until the proxy routes slug to n endpoints.
func waitRoute(t testing.TB, p *proxy.Proxy, slug string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		known, got := p.Handler().Route(slug)
		if known && got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slug %q: known=%v endpoints=%d, want %d", slug, known, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var client1 = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 20 * time.Second}
