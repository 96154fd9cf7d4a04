// Package outage checks that the proxy keeps routing with its last route table
// when the Kubernetes API goes away. It stops its own kube-apiserver and etcd
// mid-test, so it lives in a package of its own.
package outage

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/proxy"
)

func TestRoutingSurvivesAPIServerOutage(t *testing.T) {
	env, err := testenv.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = env.Stop()
		}
	}()
	env.ControlPlane.APIServer.StopTimeout = 2 * time.Second
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "alive") }))
	defer be.Close()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "outage"}}); err != nil {
		t.Fatal(err)
	}
	inst := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Name: "outage-1", Namespace: "default"}, Spec: slugwayv1.InstanceSpec{Slug: "outage", URL: be.URL}}
	if err := env.Client.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	inst.Status.Status = slugwayv1.HealthHealthy
	apimeta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonSlugClaimed, ObservedGeneration: inst.Generation})
	if err := env.Client.Status().Update(ctx, inst); err != nil {
		t.Fatal(err)
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	aln, _ := net.Listen("tcp", "127.0.0.1:0")
	p, err := proxy.New(env.Config, proxy.Options{Listener: ln, AdminListener: aln, DrainTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, n := p.Handler().Route("outage"); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("route not built")
		}
		time.Sleep(10 * time.Millisecond)
	}
	get := func() (int, string) {
		resp, err := http.Get("http://" + p.Addr() + "/outage/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, b := get(); c != 200 || b != "alive" {
		t.Fatalf("before the outage: %d %q", c, b)
	}

	// Kill kube-apiserver, like a crash. (A graceful stop would wait for the
	// proxy's open watches for 20s.) Its etcd stays, unreachable behind it.
	if err := env.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	defer func() { stopped = true; _ = env.Stop() }()
	// Long enough for the informers to notice, fail their watches and start retrying.
	end := time.Now().Add(3 * time.Second)
	n := 0
	for time.Now().Before(end) {
		if c, b := get(); c != 200 || b != "alive" {
			t.Fatalf("during the outage, request %d: %d %q", n, c, b)
		}
		n++
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d requests routed with the last known table while the apiserver was down", n)
	if !p.Ready() {
		t.Error("the proxy turned unready during the outage; it should keep serving its last table")
	}
}
