package controllers_test

import (
	"context"
	"errors"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/controllers"
	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/registry"
)

// The Ready Event of a ServiceAccount follows a successful status write: a failed
// patch emits none (its retry decides again), and the retry that writes emits one.
func TestServiceAccountEventOnlyAfterStatusWrite(t *testing.T) {
	sa := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "evented"}, Spec: slugwayv1.ServiceAccountSpec{Owner: "o"}}
	inst := &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "evented-a"},
		Spec:       slugwayv1.InstanceSpec{Slug: "evented", URL: "http://10.0.0.1"},
		Status: slugwayv1.InstanceStatus{Conditions: []metav1.Condition{{
			Type: slugwayv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Healthy", LastTransitionTime: metav1.Now(),
		}}},
	}
	failPatch := true
	c := fake.NewClientBuilder().WithScheme(kubeclient.Scheme()).
		WithObjects(sa, inst).WithStatusSubresource(&slugwayv1.ServiceAccount{}, &slugwayv1.Instance{}).
		WithIndex(&slugwayv1.Instance{}, registry.IndexSlug, registry.IndexInstanceSlug).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
				if failPatch {
					return errors.New("injected: the status patch failed")
				}
				return c.SubResource(sub).Patch(ctx, obj, p, opts...)
			},
		}).Build()
	rec := events.NewFakeRecorder(10)
	r := &controllers.ServiceAccountReconciler{Client: c, Recorder: rec}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(sa)}
	ctx := context.Background()

	for range 2 { // the failure, then the controller's retry of it
		if _, err := r.Reconcile(ctx, req); err == nil {
			t.Fatal("Reconcile succeeded although its status patch failed")
		}
	}
	if n := len(rec.Events); n != 0 {
		t.Fatalf("%d Events after failed status patches, want none: %s", n, <-rec.Events)
	}

	failPatch = false
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Events); n != 1 {
		t.Fatalf("%d Events after the status write, want 1", n)
	}
	if ev := <-rec.Events; ev != "Normal "+slugwayv1.ReasonInstancesRoutable+" 1 of 1 instances routable" {
		t.Errorf("Event %q", ev)
	}
	var got slugwayv1.ServiceAccount
	if err := c.Get(ctx, req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	if !apimeta.IsStatusConditionTrue(got.Status.Conditions, slugwayv1.ConditionReady) {
		t.Fatalf("status not written: %+v", got.Status)
	}
	// Nothing changed since: a second pass writes nothing and tells nobody.
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Events); n != 0 {
		t.Fatalf("%d Events from a reconcile that changed nothing", n)
	}
}
