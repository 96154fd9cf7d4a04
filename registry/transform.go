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

// TrimForProxy keeps what the proxy's route table reads (proxy/routes): of an Instance
// its spec, status (of the conditions only Owned), name, namespace, generation,
// timestamps and LabelClaimUID; of a ServiceAccount its name, UID and timestamps.
func TrimForProxy(obj any) (any, error) {
	switch o := obj.(type) {
	case *slugwayv1.Instance:
		trimMeta(&o.ObjectMeta, true)
		o.Finalizers, o.OwnerReferences = nil, nil
		o.Status.LastHeartbeat = nil
		if c := apimeta.FindStatusCondition(o.Status.Conditions, slugwayv1.ConditionOwned); c != nil {
			owned := *c
			owned.Message = ""
			o.Status.Conditions = []metav1.Condition{owned}
		} else {
			o.Status.Conditions = nil
		}
	case *slugwayv1.ServiceAccount:
		trimMeta(&o.ObjectMeta, false)
		o.Finalizers, o.OwnerReferences = nil, nil
		o.Spec = slugwayv1.ServiceAccountSpec{}
		o.Status = slugwayv1.ServiceAccountStatus{}
	case metav1.Object:
		o.SetManagedFields(nil)
	}
	return obj, nil
}

func trimMeta(m *metav1.ObjectMeta, claimLabel bool) {
	m.ManagedFields, m.Annotations = nil, nil
	uid, ok := m.Labels[LabelClaimUID]
	m.Labels = nil
	if claimLabel && ok {
		m.Labels = map[string]string{LabelClaimUID: uid}
	}
}
