package routes

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// TestInstanceChangedCoversBuild mutates an instance in every way we know of and
// checks that whenever Build's table differs, InstanceChanged says so; and that
// heartbeat refreshes, which Build ignores, are recognized as irrelevant.
func TestInstanceChangedCoversBuild(t *testing.T) {
	now := metav1.NewTime(time.Unix(100, 0))
	later := metav1.NewTime(time.Unix(130, 0))
	base := func() slugwayv1.Instance {
		i := inst("i", "a", "http://10.0.0.1/p", slugwayv1.HealthHealthy)
		i.Status.LastHeartbeat = &now
		i.Status.Conditions = append(i.Status.Conditions, metav1.Condition{
			Type: slugwayv1.ConditionReady, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonProbeSucceeded, Message: "ok", ObservedGeneration: 1,
		})
		return i
	}
	for _, tc := range []struct {
		name     string
		mutate   func(*slugwayv1.Instance)
		relevant bool // must InstanceChanged be true? (false: it must be false, to save the rebuild)
	}{
		{"heartbeat refresh", func(i *slugwayv1.Instance) { i.Status.LastHeartbeat = &later }, false},
		{"ready message", func(i *slugwayv1.Instance) { i.Status.Conditions[1].Message = "still ok" }, false},
		{"labels", func(i *slugwayv1.Instance) { i.Labels = map[string]string{"x": "y"} }, false},
		{"resource version", func(i *slugwayv1.Instance) { i.ResourceVersion = "42" }, false},
		{"observed generation of status", func(i *slugwayv1.Instance) { i.Status.ObservedGeneration = 7 }, false},
		{"unreachable", func(i *slugwayv1.Instance) { i.Status.Status = slugwayv1.HealthUnreachable }, true},
		{"degraded", func(i *slugwayv1.Instance) { i.Status.Status = slugwayv1.HealthDegraded }, true},
		{"unknown", func(i *slugwayv1.Instance) { i.Status.Status = slugwayv1.HealthUnknown }, true},
		{"url", func(i *slugwayv1.Instance) { i.Spec.URL = "http://10.0.0.2/p" }, true},
		{"url path", func(i *slugwayv1.Instance) { i.Spec.URL = "http://10.0.0.1/q" }, true},
		{"scheme", func(i *slugwayv1.Instance) { i.Spec.URL = "https://10.0.0.1/p" }, true},
		{"h2c", func(i *slugwayv1.Instance) { i.Spec.AppProtocol = slugwayv1.AppProtocolH2C }, true},
		{"slug", func(i *slugwayv1.Instance) { i.Spec.Slug = "b" }, true},
		{"name", func(i *slugwayv1.Instance) { i.Name = "j" }, true},
		{"namespace", func(i *slugwayv1.Instance) { i.Namespace = "other" }, true},
		{"generation ahead of Owned", func(i *slugwayv1.Instance) { i.Generation = 2 }, true},
		{"deleting", func(i *slugwayv1.Instance) { i.DeletionTimestamp = &now }, true},
		{"not owned", func(i *slugwayv1.Instance) { i.Status.Conditions[0].Status = metav1.ConditionFalse }, true},
		{"owned condition gone", func(i *slugwayv1.Instance) { i.Status.Conditions = i.Status.Conditions[1:] }, true},
		{"owned for an old generation", func(i *slugwayv1.Instance) {
			i.Generation = 3
			i.Status.Conditions[0].ObservedGeneration = 2
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, upd := base(), base()
			tc.mutate(&upd)
			slugs := []slugwayv1.ServiceAccount{sa("a", false), sa("b", false)}
			differs := !reflect.DeepEqual(Build(slugs, []slugwayv1.Instance{old}), Build(slugs, []slugwayv1.Instance{upd}))
			got := InstanceChanged(&old, &upd)
			if differs && !got {
				t.Fatalf("Build's table changed but InstanceChanged is false: the proxy would keep routing by a stale table")
			}
			if got != tc.relevant {
				t.Errorf("InstanceChanged = %v, want %v", got, tc.relevant)
			}
		})
	}
}

func TestSlugChanged(t *testing.T) {
	a := sa("a", false)
	counted := a
	counted.Status.HealthyInstances = 3
	if SlugChanged(&a, &counted) {
		t.Error("a status count update must not need a rebuild: Build does not read it")
	}
	deleting := sa("a", true)
	if !SlugChanged(&a, &deleting) {
		t.Error("a slug being deleted changes its route")
	}
	if differs := !reflect.DeepEqual(Build([]slugwayv1.ServiceAccount{a}, nil), Build([]slugwayv1.ServiceAccount{counted}, nil)); differs {
		t.Error("Build reads ServiceAccount status after all: SlugChanged must compare it")
	}
}
