package routes

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// snapshot is a cluster state: ServiceAccounts by name, Instances by namespace/name.
type snapshot struct {
	sas   map[string]slugwayv1.ServiceAccount
	insts map[string]slugwayv1.Instance
}

func (s *snapshot) lists() ([]slugwayv1.ServiceAccount, []slugwayv1.Instance) {
	var sas []slugwayv1.ServiceAccount
	var insts []slugwayv1.Instance
	for _, sa := range s.sas {
		sas = append(sas, sa)
	}
	for _, in := range s.insts {
		insts = append(insts, in)
	}
	return sas, insts
}

// routeOf is what the proxy's watcher does for a dirty slug: its ServiceAccount
// (nil if none) and the instances an index on spec.slug returns.
func (s *snapshot) routeOf(slug string) *Route {
	var insts []slugwayv1.Instance
	for _, in := range s.insts {
		if in.Spec.Slug == slug {
			insts = append(insts, in)
		}
	}
	sa, ok := s.sas[slug]
	if !ok {
		return BuildSlug(nil, insts)
	}
	return BuildSlug(&sa, insts)
}

var (
	propSlugs  = []string{"a", "b", "c", "d", "ghost"} // "ghost" never gets a ServiceAccount
	propHealth = []slugwayv1.Health{slugwayv1.HealthHealthy, slugwayv1.HealthDegraded, slugwayv1.HealthUnknown, slugwayv1.HealthUnreachable, ""}
	propURLs   = []string{"http://10.0.0.1", "http://10.0.0.2:8080/p/", "https://svc:8443", "http://10.0.0.1", "ftp://x", "http://%zz"}
)

func randInst(r *rand.Rand, name string) slugwayv1.Instance {
	return inst(name, propSlugs[r.IntN(len(propSlugs))], propURLs[r.IntN(len(propURLs))], propHealth[r.IntN(len(propHealth))])
}

// mutate applies one random change to s and returns the slugs it touched, as the
// watcher derives them from an event's old and new objects.
func mutate(r *rand.Rand, s *snapshot) (what string, dirty []string) {
	now := metav1.NewTime(time.Unix(5, 0))
	if r.IntN(6) == 0 { // a ServiceAccount event
		slug := propSlugs[r.IntN(len(propSlugs)-1)]
		cur, exists := s.sas[slug]
		switch {
		case !exists:
			s.sas[slug] = sa(slug, false)
			return "create ServiceAccount " + slug, []string{slug}
		case r.IntN(3) == 0:
			cur.DeletionTimestamp = &now
			s.sas[slug] = cur
			return "ServiceAccount " + slug + " being deleted", []string{slug}
		default:
			delete(s.sas, slug)
			return "delete ServiceAccount " + slug, []string{slug}
		}
	}
	name := fmt.Sprintf("i%d", r.IntN(12))
	key := "ns/" + name
	old, exists := s.insts[key]
	if !exists {
		in := randInst(r, name)
		s.insts[key] = in
		return "create " + key + " in " + in.Spec.Slug, []string{in.Spec.Slug}
	}
	in := *old.DeepCopy()
	switch r.IntN(7) {
	case 0:
		delete(s.insts, key)
		return "delete " + key, []string{old.Spec.Slug}
	case 1:
		in.Spec.Slug = propSlugs[r.IntN(len(propSlugs))]
		what = "move " + key + " to " + in.Spec.Slug
	case 2:
		in.Spec.URL = propURLs[r.IntN(len(propURLs))]
		what = "URL of " + key
	case 3:
		in.Status.Conditions[0].Status = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse}[r.IntN(2)]
		in.Generation = int64(1 + r.IntN(2))
		what = "ownership of " + key
	case 4:
		in.DeletionTimestamp = &now
		what = key + " being deleted"
	default:
		in.Status.Status = propHealth[r.IntN(len(propHealth))]
		what = key + " now " + string(in.Status.Status)
	}
	s.insts[key] = in
	return what, []string{old.Spec.Slug, in.Spec.Slug}
}

// TestUpdatedSlugBySlugEqualsFullBuild applies random sequences of changes to random
// snapshots (health transitions, instances moving between slugs, changing URL or
// ownership, deleted, ServiceAccounts deleted and recreated) and, after each batch,
// recomputes only the touched slugs with BuildSlug and Table.With: the table must
// equal a full Build of the same snapshot, and share every untouched slug's Route.
func TestUpdatedSlugBySlugEqualsFullBuild(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 42))
		s := &snapshot{sas: map[string]slugwayv1.ServiceAccount{}, insts: map[string]slugwayv1.Instance{}}
		for _, slug := range propSlugs[:len(propSlugs)-1] {
			if r.IntN(4) != 0 {
				s.sas[slug] = sa(slug, false)
			}
		}
		for i := range r.IntN(12) {
			name := fmt.Sprintf("i%d", i)
			s.insts["ns/"+name] = randInst(r, name)
		}
		tbl := Build(s.lists())
		var log []string
		for range 40 {
			dirty := map[string]bool{}
			for range 1 + r.IntN(3) { // changes coalesced into one update
				what, slugs := mutate(r, s)
				log = append(log, what)
				for _, slug := range slugs {
					dirty[slug] = true
				}
			}
			changed := map[string]*Route{}
			for slug := range dirty {
				changed[slug] = s.routeOf(slug)
			}
			prev := tbl
			tbl = prev.With(changed)
			if want := Build(s.lists()); !reflect.DeepEqual(tbl, want) {
				t.Fatalf("seed %d: after %v\nupdated table %s\nfull Build    %s", seed, log, dump(tbl), dump(want))
			}
			for slug, rt := range tbl.Routes {
				if !dirty[slug] && prev.Routes[slug] != rt {
					t.Fatalf("seed %d: slug %q was not touched but its Route was replaced", seed, slug)
				}
			}
		}
	}
}

func dump(t *Table) string {
	s := ""
	for slug, r := range t.Routes {
		s += fmt.Sprintf("%s:%+v ", slug, *r)
	}
	return s
}

func TestWithLeavesTheOldTableAlone(t *testing.T) {
	old := Build([]slugwayv1.ServiceAccount{sa("a", false), sa("b", false)}, []slugwayv1.Instance{inst("i", "a", "http://10.0.0.1", slugwayv1.HealthHealthy)})
	ra, rb := old.Routes["a"], old.Routes["b"]
	nt := old.With(map[string]*Route{"a": nil, "c": {Slug: "c"}})
	if len(old.Routes) != 2 || old.Routes["a"] != ra || old.Routes["b"] != rb {
		t.Fatal("With modified the table it was called on: a handler serving it would see a half-made table")
	}
	if nt.Lookup("a") != nil || nt.Lookup("b") != rb || nt.Lookup("c") == nil {
		t.Fatalf("With: got %v", nt.Routes)
	}
	if (*Table)(nil).With(map[string]*Route{"x": {Slug: "x"}}).Lookup("x") == nil {
		t.Fatal("With on a nil table must start from the empty table")
	}
}

func TestBuildSlug(t *testing.T) {
	a := sa("a", false)
	insts := []slugwayv1.Instance{inst("x", "b", "http://10.0.0.9", slugwayv1.HealthHealthy), inst("h", "a", "http://10.0.0.1", slugwayv1.HealthHealthy)}
	r := BuildSlug(&a, insts)
	if len(r.Endpoints) != 1 || r.Endpoints[0].Key != "ns/h" {
		t.Fatalf("BuildSlug must route only the slug's own instances: %+v", r)
	}
	if BuildSlug(nil, insts) != nil {
		t.Fatal("a slug without a ServiceAccount has no route")
	}
}
