package registry

import (
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

func bloated() (*slugwayv1.Instance, *slugwayv1.ServiceAccount) {
	big := strings.Repeat("x", 250<<10)
	meta := metav1.ObjectMeta{
		Name: "i", Namespace: "n", UID: types.UID("u"), Generation: 3, ResourceVersion: "7",
		Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": big},
		Labels:        map[string]string{LabelClaimUID: "claim", "junk": "y"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		Finalizers:    []string{"f"},
	}
	inst := &slugwayv1.Instance{ObjectMeta: meta, Spec: slugwayv1.InstanceSpec{Slug: "s", URL: "http://h"},
		Status: slugwayv1.InstanceStatus{Status: slugwayv1.HealthHealthy, Conditions: []metav1.Condition{
			{Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, ObservedGeneration: 3, Message: "m"},
			{Type: slugwayv1.ConditionReady, Status: metav1.ConditionTrue, Message: "m"},
		}}}
	sa := &slugwayv1.ServiceAccount{ObjectMeta: *meta.DeepCopy(), Spec: slugwayv1.ServiceAccountSpec{Owner: "alice", DisplayName: big}}
	sa.Namespace = ""
	return inst, sa
}

func TestTrimForController(t *testing.T) {
	inst, sa := bloated()
	_, _ = TrimForController(inst)
	_, _ = TrimForController(sa)
	if inst.Annotations != nil || inst.ManagedFields != nil || len(inst.Labels) != 1 || inst.Labels[LabelClaimUID] != "claim" {
		t.Errorf("instance metadata not trimmed: annotations %d, managedFields %d, labels %v", len(inst.Annotations), len(inst.ManagedFields), inst.Labels)
	}
	if inst.Spec.URL != "http://h" || len(inst.Status.Conditions) != 2 || inst.Generation != 3 || inst.ResourceVersion != "7" || len(inst.Finalizers) != 1 {
		t.Errorf("the controller's fields were trimmed: %+v", inst)
	}
	if sa.Annotations != nil || sa.Labels != nil || sa.Spec.Owner != "alice" || len(sa.Finalizers) != 1 {
		t.Errorf("ServiceAccount: %+v", sa.ObjectMeta)
	}
}

func TestTrimForProxy(t *testing.T) {
	inst, sa := bloated()
	_, _ = TrimForProxy(inst)
	_, _ = TrimForProxy(sa)
	if inst.Annotations != nil || inst.ManagedFields != nil || inst.Labels[LabelClaimUID] != "claim" || len(inst.Labels) != 1 {
		t.Errorf("instance metadata not trimmed: %+v", inst.ObjectMeta)
	}
	c := apimeta.FindStatusCondition(inst.Status.Conditions, slugwayv1.ConditionOwned)
	if len(inst.Status.Conditions) != 1 || c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 3 || inst.Status.Status != slugwayv1.HealthHealthy {
		t.Errorf("the route table's fields were trimmed: %+v", inst.Status)
	}
	if sa.Spec.DisplayName != "" || sa.Annotations != nil || sa.UID != "u" || sa.Name != "i" {
		t.Errorf("ServiceAccount: %+v %+v", sa.ObjectMeta, sa.Spec)
	}
}
