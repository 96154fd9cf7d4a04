package proxy

import (
	"strings"
	"testing"
	"time"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy/routes"
)

func route(slug string, eps ...string) *routes.Route {
	r := &routes.Route{Slug: slug}
	for _, e := range eps {
		key, host, _ := strings.Cut(e, "=")
		r.Endpoints = append(r.Endpoints, routes.Endpoint{Key: "ns/" + key, Scheme: "http", Host: host, Health: slugwayv1.HealthHealthy})
	}
	return r
}

func poolClosed(b *backend) bool {
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	return b.pool.closed
}

// TestSetTableRebindsOnlyChangedSlugs: a table made with With rebinds only the
// slugs it replaced. Unchanged slugs keep their live route; a changed slug keeps
// the backends (requests in flight, ejection) of endpoints that stay; the
// backends of endpoints and slugs that left have their pools closed.
func TestSetTableRebindsOnlyChangedSlugs(t *testing.T) {
	h := NewHandler(Options{})
	t1 := &routes.Table{Routes: map[string]*routes.Route{
		"s": route("s", "a=10.0.0.1:80", "b=10.0.0.2:80"),
		"u": route("u", "c=10.0.0.3:80"),
		"v": route("v", "a=10.0.0.1:80"), // same address as s's a: separate state
	}}
	h.SetTable(t1)
	l1 := h.table.Load()
	a, b := l1.routes["s"].backends[0], l1.routes["s"].backends[1]
	c, va := l1.routes["u"].backends[0], l1.routes["v"].backends[0]
	if a == va {
		t.Fatal("two slugs routing to one address must not share a backend")
	}
	a.inflight.Add(7)
	a.eject(time.Minute, time.Minute)
	c.inflight.Add(3)
	c.eject(time.Minute, time.Minute)

	// s changes: b leaves, d arrives, a's instance is renamed (same URL, same backend).
	t2 := t1.With(map[string]*routes.Route{"s": route("s", "a2=10.0.0.1:80", "d=10.0.0.4:80")})
	h.SetTable(t2)
	l2 := h.table.Load()
	if l2.routes["u"] != l1.routes["u"] || l2.routes["v"] != l1.routes["v"] {
		t.Fatal("a slug the new table did not change got a new live route")
	}
	if l2.routes["s"] == l1.routes["s"] {
		t.Fatal("the changed slug kept its old live route")
	}
	s2 := l2.routes["s"].backends
	if len(s2) != 2 || s2[0] != a || s2[1] == b {
		t.Fatalf("s's backends: %v; want a kept and a new one for d", s2)
	}
	if a.inflight.Load() != 7 || !a.ejected(time.Now().UnixNano()) || *a.key.Load() != "ns/a2" {
		t.Fatal("the endpoint that stayed lost its in-flight count or ejection, or kept its old key")
	}
	if c.inflight.Load() != 3 || !c.ejected(time.Now().UnixNano()) {
		t.Fatal("an unchanged slug's backend lost its state")
	}
	if !poolClosed(b) || poolClosed(a) || poolClosed(c) || poolClosed(va) {
		t.Fatal("only the pool of the endpoint that left may be closed")
	}
	if got := gauge(t, h, "slugway_proxy_routable_endpoints", "s"); got != 2 {
		t.Fatalf("routable endpoints of s = %v, want 2", got)
	}

	// u leaves the table.
	h.SetTable(t2.With(map[string]*routes.Route{"u": nil}))
	if known, _ := h.Route("u"); known {
		t.Fatal("a removed slug is still routed")
	}
	if !poolClosed(c) || h.slugs["u"] != nil || gauge(t, h, "slugway_proxy_routable_endpoints", "u") != -1 {
		t.Fatal("a removed slug's backends and metrics must be forgotten")
	}
	if h.table.Load().routes["s"] != l2.routes["s"] {
		t.Fatal("removing u rebound s")
	}

	// A table built from scratch (no shared Routes) still keeps backend state.
	h.SetTable(&routes.Table{Routes: map[string]*routes.Route{"s": route("s", "a2=10.0.0.1:80")}})
	if got := h.table.Load().routes["s"].backends[0]; got != a || a.inflight.Load() != 7 {
		t.Fatal("a fresh table lost the state of an endpoint that stayed")
	}
}

// gauge reads one slug's series of a gauge from the handler's registry (-1: absent).
func gauge(t *testing.T, h *Handler, name, slug string) float64 {
	t.Helper()
	mfs, err := h.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == slug {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
