package routes

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

func sa(name string, deleting bool) slugwayv1.ServiceAccount {
	s := slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if deleting {
		now := metav1.NewTime(time.Unix(1, 0))
		s.DeletionTimestamp = &now
	}
	return s
}

type instOpt func(*slugwayv1.Instance)

func inst(name, slug, url string, health slugwayv1.Health, opts ...instOpt) slugwayv1.Instance {
	i := slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Generation: 1},
		Spec:       slugwayv1.InstanceSpec{Slug: slug, URL: url},
		Status: slugwayv1.InstanceStatus{Status: health, Conditions: []metav1.Condition{{
			Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonSlugClaimed, ObservedGeneration: 1,
		}}},
	}
	for _, o := range opts {
		o(&i)
	}
	return i
}

func notOwned(reason string) instOpt {
	return func(i *slugwayv1.Instance) {
		i.Status.Conditions[0].Status, i.Status.Conditions[0].Reason = metav1.ConditionFalse, reason
	}
}

func TestBuild(t *testing.T) {
	H, D, U, X := slugwayv1.HealthHealthy, slugwayv1.HealthDegraded, slugwayv1.HealthUnknown, slugwayv1.HealthUnreachable
	for _, tc := range []struct {
		name      string
		slugs     []slugwayv1.ServiceAccount
		instances []slugwayv1.Instance
		// want: slug → keys of its endpoints; a slug absent from want must be unknown.
		want         map[string][]string
		wantDegraded map[string]bool
	}{
		{name: "empty", want: map[string][]string{}},
		{
			name:      "healthy instances are routed, sorted by key",
			slugs:     []slugwayv1.ServiceAccount{sa("a", false)},
			instances: []slugwayv1.Instance{inst("b", "a", "http://10.0.0.2", H), inst("a", "a", "http://10.0.0.1", H)},
			want:      map[string][]string{"a": {"ns/a", "ns/b"}},
		},
		{
			name:  "a slug without instances is known but has no endpoints",
			slugs: []slugwayv1.ServiceAccount{sa("a", false)},
			want:  map[string][]string{"a": nil},
		},
		{
			name:      "instances of an unclaimed slug make no route",
			instances: []slugwayv1.Instance{inst("a", "ghost", "http://10.0.0.1", H)},
			want:      map[string][]string{},
		},
		{
			name:      "a slug being deleted routes nothing",
			slugs:     []slugwayv1.ServiceAccount{sa("a", true)},
			instances: []slugwayv1.Instance{inst("a", "a", "http://10.0.0.1", H)},
			want:      map[string][]string{"a": nil},
		},
		{
			name:  "unknown, unreachable and empty status are never routed",
			slugs: []slugwayv1.ServiceAccount{sa("a", false)},
			instances: []slugwayv1.Instance{
				inst("u", "a", "http://10.0.0.1", U), inst("x", "a", "http://10.0.0.2", X), inst("e", "a", "http://10.0.0.3", ""),
			},
			want: map[string][]string{"a": nil},
		},
		{
			name:         "degraded only when no healthy one exists",
			slugs:        []slugwayv1.ServiceAccount{sa("a", false), sa("b", false)},
			instances:    []slugwayv1.Instance{inst("d1", "a", "http://10.0.0.1", D), inst("h1", "a", "http://10.0.0.2", H), inst("d2", "b", "http://10.0.0.3", D), inst("x2", "b", "http://10.0.0.4", X)},
			want:         map[string][]string{"a": {"ns/h1"}, "b": {"ns/d2"}},
			wantDegraded: map[string]bool{"b": true},
		},
		{
			name:  "unowned, URL conflicts and missing Owned conditions are never routed",
			slugs: []slugwayv1.ServiceAccount{sa("a", false)},
			instances: []slugwayv1.Instance{
				inst("c", "a", "http://10.0.0.1", H, notOwned(slugwayv1.ReasonURLConflict)),
				inst("n", "a", "http://10.0.0.2", H, notOwned(slugwayv1.ReasonSlugNotFound)),
				inst("m", "a", "http://10.0.0.3", H, func(i *slugwayv1.Instance) { i.Status.Conditions = nil }),
				inst("ok", "a", "http://10.0.0.4", H),
			},
			want: map[string][]string{"a": {"ns/ok"}},
		},
		{
			name:  "Owned written for an older generation does not count",
			slugs: []slugwayv1.ServiceAccount{sa("a", false)},
			instances: []slugwayv1.Instance{
				inst("old", "a", "http://10.0.0.1", H, func(i *slugwayv1.Instance) { i.Generation = 2 }),
			},
			want: map[string][]string{"a": nil},
		},
		{
			name:  "instances being deleted and bad URLs are skipped",
			slugs: []slugwayv1.ServiceAccount{sa("a", false)},
			instances: []slugwayv1.Instance{
				inst("del", "a", "http://10.0.0.1", H, func(i *slugwayv1.Instance) { now := metav1.Now(); i.DeletionTimestamp = &now }),
				inst("ftp", "a", "ftp://10.0.0.2", H),
				inst("nohost", "a", "http:///x", H),
				inst("bad", "a", "http://%zz", H),
			},
			want: map[string][]string{"a": nil},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := Build(tc.slugs, tc.instances)
			if len(tbl.Routes) != len(tc.want) {
				t.Fatalf("got %d routes, want %d: %+v", len(tbl.Routes), len(tc.want), tbl.Routes)
			}
			for slug, keys := range tc.want {
				r := tbl.Lookup(slug)
				if r == nil {
					t.Fatalf("slug %q: no route", slug)
				}
				var got []string
				for _, ep := range r.Endpoints {
					got = append(got, ep.Key)
				}
				if len(got) != len(keys) {
					t.Fatalf("slug %q: endpoints %v, want %v", slug, got, keys)
				}
				for i := range got {
					if got[i] != keys[i] {
						t.Fatalf("slug %q: endpoints %v, want %v", slug, got, keys)
					}
				}
				if r.Degraded != tc.wantDegraded[slug] {
					t.Fatalf("slug %q: degraded %v, want %v", slug, r.Degraded, tc.wantDegraded[slug])
				}
			}
		})
	}
}

func TestEndpointFields(t *testing.T) {
	h2 := inst("g", "a", "http://10.0.0.1:50051", slugwayv1.HealthHealthy, func(i *slugwayv1.Instance) { i.Spec.AppProtocol = slugwayv1.AppProtocolH2C })
	pre := inst("p", "a", "https://svc.example:8443/api/v1/", slugwayv1.HealthHealthy)
	enc := inst("e", "a", "http://10.0.0.2/a%2Fb", slugwayv1.HealthHealthy)
	tbl := Build([]slugwayv1.ServiceAccount{sa("a", false)}, []slugwayv1.Instance{h2, pre, enc})
	eps := tbl.Lookup("a").Endpoints
	want := []Endpoint{
		{Key: "ns/e", Scheme: "http", Host: "10.0.0.2", Prefix: "/a%2Fb", Health: slugwayv1.HealthHealthy},
		{Key: "ns/g", Scheme: "http", Host: "10.0.0.1:50051", H2C: true, Health: slugwayv1.HealthHealthy},
		{Key: "ns/p", Scheme: "https", Host: "svc.example:8443", Prefix: "/api/v1", Health: slugwayv1.HealthHealthy},
	}
	if len(eps) != len(want) {
		t.Fatalf("endpoints %+v", eps)
	}
	for i := range want {
		if eps[i] != want[i] {
			t.Errorf("endpoint %d: got %+v, want %+v", i, eps[i], want[i])
		}
	}
	if eps[1].ID() == (Endpoint{Scheme: "http", Host: "10.0.0.1:50051"}).ID() {
		t.Error("h2c and http/1 endpoints of one address must not share state")
	}
	if tbl.Lookup("nope") != nil || (*Table)(nil).Lookup("a") != nil {
		t.Error("unknown slug must have no route")
	}
}
