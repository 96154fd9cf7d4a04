package main

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy"
	"github.com/slugway/slugway/proxy/routes"
)

// fleet is what the scale run creates: n instances over n/10 slugs, all Healthy and owned.
func fleet(n int) ([]slugwayv1.ServiceAccount, []slugwayv1.Instance) {
	slugs := max(n/10, 1)
	sas := make([]slugwayv1.ServiceAccount, slugs)
	for j := range sas {
		sas[j].Name = slugName(j)
	}
	insts := make([]slugwayv1.Instance, n)
	for i := range insts {
		in := &insts[i]
		in.Namespace, in.Name = namespace, fmt.Sprintf("%s-%d", slugName(i%slugs), i/slugs)
		in.Generation = 1
		in.Spec = slugwayv1.InstanceSpec{Slug: slugName(i % slugs), URL: fmt.Sprintf("http://127.0.0.1:%d/i%d", 20000+i%40, i)}
		in.Status.Status = slugwayv1.HealthHealthy
		in.Status.Conditions = []metav1.Condition{
			{Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, ObservedGeneration: 1},
			{Type: slugwayv1.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: 1},
		}
	}
	return sas, insts
}

func TestFleetRoutesEveryInstance(t *testing.T) {
	sas, insts := fleet(1000)
	tb := routes.Build(sas, insts)
	n := 0
	for _, r := range tb.Routes {
		n += len(r.Endpoints)
	}
	if len(tb.Routes) != 100 || n != 1000 {
		t.Fatalf("got %d routes with %d endpoints, want 100 with 1000: the benchmark would not measure a full table", len(tb.Routes), n)
	}
}

// BenchmarkRebuild is what the proxy does for every (coalesced) watch event: build
// the whole route table from the cache's objects and swap it into the handler.
func BenchmarkRebuild(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		sas, insts := fleet(n)
		b.Run(fmt.Sprintf("instances=%d/build", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				routes.Build(sas, insts)
			}
		})
		b.Run(fmt.Sprintf("instances=%d/build+swap", n), func(b *testing.B) {
			h := proxy.NewHandler(proxy.Options{})
			b.ReportAllocs()
			for b.Loop() {
				h.SetTable(routes.Build(sas, insts))
			}
		})
	}
}
