package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
)

// The ServiceAccount's status counts its instances and the routable ones; deleting it
// deletes its instances, so a later claimant of the slug does not inherit them.
func TestServiceAccountAggregatesAndReleases(t *testing.T) {
	startController(t, nil)
	ok, bad := newBackend(t, 0), newBackend(t, 0)
	bad.set("fail")
	sa := claim(t, "aggregate")
	a := newInstance(t, "aggregate-a", "aggregate", ok.URL, fastCheck())
	newInstance(t, "aggregate-b", "aggregate", bad.URL, fastCheck())
	ctx := context.Background()

	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		got := &slugwayv1.ServiceAccount{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(sa), got); err != nil {
			return err
		}
		if got.Status.Instances != 2 || got.Status.HealthyInstances != 1 {
			return fmt.Errorf("status %+v, want 2 instances, 1 healthy", got.Status)
		}
		if !apimeta.IsStatusConditionTrue(got.Status.Conditions, slugwayv1.ConditionReady) {
			return fmt.Errorf("not Ready: %+v", got.Status.Conditions)
		}
		if len(got.Finalizers) != 1 || got.Finalizers[0] != slugwayv1.FinalizerInstances {
			return fmt.Errorf("finalizers %v", got.Finalizers)
		}
		return nil
	})

	if err := env.Client.Delete(ctx, sa); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		var list slugwayv1.InstanceList
		if err := env.Client.List(ctx, &list); err != nil {
			return err
		}
		for _, i := range list.Items {
			if i.Spec.Slug == "aggregate" {
				return fmt.Errorf("instance %s of the released slug is still there", i.Name)
			}
		}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(sa), &slugwayv1.ServiceAccount{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("ServiceAccount still there: %v", err)
		}
		return nil
	})
	_ = a
}
