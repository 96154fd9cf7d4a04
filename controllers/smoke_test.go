package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

func TestSmokeHealthy(t *testing.T) {
	stop, err := env.StartController(env.ControllerOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx := context.Background()
	c := env.Client
	if err := c.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}, Spec: slugwayv1.ServiceAccountSpec{Owner: "me"}}); err != nil {
		t.Fatal(err)
	}
	inst := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Name: "smoke-1", Namespace: "default"}, Spec: slugwayv1.InstanceSpec{Slug: "smoke", URL: srv.URL}}
	if err := c.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	t.Logf("defaults: %+v", inst.Spec.HealthCheck)
	eventually(t, 10*time.Second, func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(inst), inst); err != nil {
			return err
		}
		if inst.Status.Status != slugwayv1.HealthHealthy {
			return fmt.Errorf("status %q, conditions %+v", inst.Status.Status, inst.Status.Conditions)
		}
		return nil
	})
}
