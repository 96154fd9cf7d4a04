package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/registry"
)

// ServiceAccountReconciler aggregates a slug's Instances into the ServiceAccount's
// status, and deletes them when the slug is released.
type ServiceAccountReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
}

// Reconcile updates the counts and the Ready condition, and runs the deletion finalizer.
func (r *ServiceAccountReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var sa slugwayv1.ServiceAccount
	if err := r.Get(ctx, req.NamespacedName, &sa); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var list slugwayv1.InstanceList
	if err := r.List(ctx, &list, client.MatchingFields{registry.IndexSlug: sa.Name}); err != nil {
		return ctrl.Result{}, err
	}

	if !sa.DeletionTimestamp.IsZero() {
		return r.release(ctx, &sa, list.Items)
	}
	// Patches, not updates: the cached object lacks the fields the cache transform drops
	// (registry.TrimForController), and an update would erase them.
	if before := sa.DeepCopy(); controllerutil.AddFinalizer(&sa, slugwayv1.FinalizerInstances) {
		if err := r.Patch(ctx, &sa, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, err
		}
	}

	desired := sa.Status.DeepCopy()
	desired.ObservedGeneration = sa.Generation
	desired.Instances, desired.HealthyInstances = int32(len(list.Items)), 0
	for i := range list.Items {
		if apimeta.IsStatusConditionTrue(list.Items[i].Status.Conditions, slugwayv1.ConditionReady) {
			desired.HealthyInstances++
		}
	}
	ready := metav1.Condition{Type: slugwayv1.ConditionReady, ObservedGeneration: sa.Generation}
	if desired.HealthyInstances > 0 {
		ready.Status, ready.Reason = metav1.ConditionTrue, slugwayv1.ReasonInstancesRoutable
		ready.Message = fmt.Sprintf("%d of %d instances routable", desired.HealthyInstances, desired.Instances)
	} else {
		ready.Status, ready.Reason = metav1.ConditionFalse, slugwayv1.ReasonNoRoutableInstances
		ready.Message = fmt.Sprintf("none of %d instances routable: /%s/ answers 503 (or 404 with no instances)", desired.Instances, sa.Name)
	}
	apimeta.SetStatusCondition(&desired.Conditions, ready)
	if equality.Semantic.DeepEqual(&sa.Status, desired) {
		return ctrl.Result{}, nil
	}
	before := sa.DeepCopy()
	sa.Status = *desired
	if err := r.Status().Patch(ctx, &sa, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, err // no Event: the retry decides again, on what it reads then
	}
	if apimeta.IsStatusConditionTrue(before.Status.Conditions, slugwayv1.ConditionReady) != (ready.Status == metav1.ConditionTrue) {
		typ := corev1.EventTypeNormal
		if ready.Status != metav1.ConditionTrue {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(&sa, nil, typ, ready.Reason, "Aggregate", "%s", ready.Message)
	}
	return ctrl.Result{}, nil
}

// release deletes the slug's instances, then lets the ServiceAccount go.
func (r *ServiceAccountReconciler) release(ctx context.Context, sa *slugwayv1.ServiceAccount, items []slugwayv1.Instance) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(sa, slugwayv1.FinalizerInstances) {
		return ctrl.Result{}, nil
	}
	pending := 0
	for i := range items {
		inst := &items[i]
		pending++
		if !inst.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.Delete(ctx, inst); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
		r.Recorder.Eventf(sa, inst, corev1.EventTypeNormal, "DeletingInstance", "Release",
			"slug %q released: deleting its instance %s/%s", sa.Name, inst.Namespace, inst.Name)
	}
	if pending > 0 {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	before := sa.DeepCopy()
	controllerutil.RemoveFinalizer(sa, slugwayv1.FinalizerInstances)
	return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, sa, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})))
}

// SetupWithManager wires the controller: a change to any Instance re-aggregates its slug.
func (r *ServiceAccountReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("serviceaccount").
		For(&slugwayv1.ServiceAccount{}).
		Watches(&slugwayv1.Instance{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.(*slugwayv1.Instance).Spec.Slug}}}
		})).
		Complete(r)
}
