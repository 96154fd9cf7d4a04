package proxy

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

func TestRoutingChangedSkipsHeartbeatRefreshes(t *testing.T) {
	t0, t1 := metav1.NewTime(time.Unix(100, 0)), metav1.NewTime(time.Unix(130, 0))
	old := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Name: "i", Namespace: "ns", ResourceVersion: "1"},
		Spec:   slugwayv1.InstanceSpec{Slug: "a", URL: "http://10.0.0.1"},
		Status: slugwayv1.InstanceStatus{Status: slugwayv1.HealthHealthy, LastHeartbeat: &t0}}
	beat := old.DeepCopy()
	beat.ResourceVersion, beat.Status.LastHeartbeat = "2", &t1
	if routingChanged(old, beat) {
		t.Error("a heartbeat refresh must not rebuild the route table")
	}
	down := beat.DeepCopy()
	down.Status.Status = slugwayv1.HealthUnreachable
	if !routingChanged(beat, down) {
		t.Error("a health change must rebuild the route table")
	}
	sa := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "a"}}
	counted := sa.DeepCopy()
	counted.Status.Instances = 2
	if routingChanged(sa, counted) {
		t.Error("a slug's status counts must not rebuild the route table")
	}
	if !routingChanged("unexpected", down) {
		t.Error("an update of an unexpected type must rebuild, to be safe")
	}
}
