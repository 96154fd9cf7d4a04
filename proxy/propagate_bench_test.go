package proxy

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy/routes"
)

// benchFleet is the scale run's shape: n instances over n/10 slugs, all Healthy and owned.
func benchFleet(n int) ([]slugwayv1.ServiceAccount, []slugwayv1.Instance) {
	slugs := max(n/10, 1)
	sas := make([]slugwayv1.ServiceAccount, slugs)
	for j := range sas {
		sas[j].Name = fmt.Sprintf("slug-%d", j)
	}
	insts := make([]slugwayv1.Instance, n)
	for i := range insts {
		in := &insts[i]
		in.Namespace, in.Name = "ns", fmt.Sprintf("slug-%d-%d", i%slugs, i/slugs)
		in.Generation = 1
		in.Spec = slugwayv1.InstanceSpec{Slug: sas[i%slugs].Name, URL: fmt.Sprintf("http://127.0.0.1:%d/i%d", 20000+i%40, i)}
		in.Status.Status = slugwayv1.HealthHealthy
		in.Status.Conditions = []metav1.Condition{{Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, ObservedGeneration: 1}}
	}
	return sas, insts
}

// BenchmarkApplyOneChange is what the proxy does for one health transition at
// 10,000 instances over 1,000 slugs: compute the new table and swap it into the
// handler. The instance flips between Healthy and Unreachable, so every
// iteration is a real change. (Listing from the informer cache is not included.)
func BenchmarkApplyOneChange(b *testing.B) {
	sas, insts := benchFleet(10000)
	flip := func(int) {
		if insts[0].Status.Status == slugwayv1.HealthHealthy {
			insts[0].Status.Status = slugwayv1.HealthUnreachable
		} else {
			insts[0].Status.Status = slugwayv1.HealthHealthy
		}
	}
	b.Run("full", func(b *testing.B) {
		h := NewHandler(Options{})
		h.SetTable(routes.Build(sas, insts))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			flip(i)
			i++
			h.SetTable(routes.Build(sas, insts))
		}
	})
	// What the watcher does now: rebuild the changed slug from its objects (the
	// informer's spec.slug index hands it the 10) and publish a table sharing the rest.
	b.Run("one-slug", func(b *testing.B) {
		h := NewHandler(Options{})
		t := routes.Build(sas, insts)
		h.SetTable(t)
		slug := insts[0].Spec.Slug
		var own []slugwayv1.Instance
		for _, in := range insts {
			if in.Spec.Slug == slug {
				own = append(own, in)
			}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			flip(i)
			i++
			own[0].Status.Status = insts[0].Status.Status
			t = t.With(map[string]*routes.Route{slug: routes.BuildSlug(&sas[0], own)})
			h.SetTable(t)
		}
		if n := len(h.table.Load().routes[slug].backends); n != 9 && n != 10 {
			b.Fatalf("the flipped slug routes %d endpoints: the benchmark did not apply the change", n)
		}
	})
}
