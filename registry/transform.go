package registry

import (
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// The caches of the controller and the proxy hold every Instance and ServiceAccount.
// Owners write those objects, so what they may write freely (annotations, labels,
// up to 256 KiB each object) must not fill the caches: these transforms keep only the
// fields that the readers use. Use them as cache.Options.DefaultTransform.

// TrimForController keeps what the controller and the webhooks read: spec, status,
// name, namespace, UID, generation, resourceVersion, timestamps, finalizers, and of the
// labels only LabelClaimUID. Writes that start from a trimmed object must be patches
// (a merge patch touches only what it changed), never updates.
func TrimForController(obj any) (any, error) {
	switch o := obj.(type) {
	case *slugwayv1.Instance:
		trimMeta(&o.ObjectMeta, true)
	case *slugwayv1.ServiceAccount:
		trimMeta(&o.ObjectMeta, false)
	case metav1.Object:
		o.SetManagedFields(nil)
	}
	return obj, nil
}

// TrimForProxy keeps what the proxy reads: the route table (proxy/routes) and the
// dashboard (proxy/dashboard_source.go). Of an Instance: its spec, status.status,
// lastHeartbeat, the Owned and Ready conditions (without their messages), name,
// namespace, generation, timestamps and LabelClaimUID. Of a ServiceAccount: its name,
// UID, timestamps, spec.displayName and spec.owner (both bounded by the CRD), the
// instance counts and the Ready condition (without its message).
func TrimForProxy(obj any) (any, error) {
	switch o := obj.(type) {
	case *slugwayv1.Instance:
		trimMeta(&o.ObjectMeta, true)
		o.Finalizers, o.OwnerReferences = nil, nil
		o.Status.Conditions = keepConditions(o.Status.Conditions, slugwayv1.ConditionOwned, slugwayv1.ConditionReady)
	case *slugwayv1.ServiceAccount:
		trimMeta(&o.ObjectMeta, false)
		o.Finalizers, o.OwnerReferences = nil, nil
		o.Spec = slugwayv1.ServiceAccountSpec{DisplayName: o.Spec.DisplayName, Owner: o.Spec.Owner}
		o.Status = slugwayv1.ServiceAccountStatus{
			Instances:        o.Status.Instances,
			HealthyInstances: o.Status.HealthyInstances,
			Conditions:       keepConditions(o.Status.Conditions, slugwayv1.ConditionReady),
		}
	case metav1.Object:
		o.SetManagedFields(nil)
	}
	return obj, nil
}

// keepConditions returns the conditions of the given types, in their order, without
// their messages (free text that can be long).
func keepConditions(all []metav1.Condition, types ...string) []metav1.Condition {
	var kept []metav1.Condition
	for _, t := range types {
		if c := apimeta.FindStatusCondition(all, t); c != nil {
			k := *c
			k.Message = ""
			kept = append(kept, k)
		}
	}
	return kept
}

func trimMeta(m *metav1.ObjectMeta, claimLabel bool) {
	m.ManagedFields, m.Annotations = nil, nil
	uid, ok := m.Labels[LabelClaimUID]
	m.Labels = nil
	if claimLabel && ok {
		m.Labels = map[string]string{LabelClaimUID: uid}
	}
}
