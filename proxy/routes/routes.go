// Package routes turns a snapshot of ServiceAccounts and Instances into an
// immutable route table: slug → the endpoints the proxy may send its traffic to.
// Build is a pure function, so every routing rule is tested without a cluster.
package routes

import (
	"net/url"
	"slices"
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// Endpoint is one routable instance.
type Endpoint struct {
	// Key identifies the instance: "namespace/name". It never reaches clients.
	Key string
	// Scheme and Host are where requests go; Prefix is the instance URL's own
	// escaped path without its trailing slash ("" for none), prepended to the request path.
	Scheme, Host, Prefix string
	// H2C is true when the instance speaks HTTP/2 cleartext with prior knowledge (gRPC).
	H2C bool
	// Health is Healthy, or Degraded when the slug has no Healthy instance.
	Health slugwayv1.Health
}

// ID is the endpoint's identity across table rebuilds: the proxy keeps per-endpoint
// state (requests in flight, ejection) under it.
func (e Endpoint) ID() string {
	p := "h1"
	if e.H2C {
		p = "h2c"
	}
	return p + " " + e.Scheme + "://" + e.Host + e.Prefix
}

// Route is a claimed slug and its routable endpoints, sorted by Key. A Route with
// no endpoints is a known slug that cannot be served right now (503, not 404).
type Route struct {
	Slug      string
	Endpoints []Endpoint
	// Degraded is true when Endpoints are Degraded instances, used because none is Healthy.
	Degraded bool
	// Deleting is true when the slug's ServiceAccount is being deleted.
	Deleting bool
}

// Table maps slugs to routes. It is never modified after Build returns.
type Table struct {
	Routes map[string]*Route
}

// Lookup returns the route of a slug, or nil for an unknown slug.
func (t *Table) Lookup(slug string) *Route {
	if t == nil {
		return nil
	}
	return t.Routes[slug]
}

// Build computes the route table. An instance is routable when:
//   - its slug's ServiceAccount exists and is not being deleted;
//   - its Owned condition is True (the slug is claimed and its URL is not held by
//     another slug) and was written for the instance's current generation;
//   - its status is Healthy, or Degraded when none of the slug's instances is Healthy;
//   - its URL parses as an absolute http or https URL.
//
// Unknown, Unreachable, unowned and conflicting instances are never routed.
func Build(slugs []slugwayv1.ServiceAccount, instances []slugwayv1.Instance) *Table {
	t := &Table{Routes: make(map[string]*Route, len(slugs))}
	for i := range slugs {
		sa := &slugs[i]
		t.Routes[sa.Name] = &Route{Slug: sa.Name, Deleting: !sa.DeletionTimestamp.IsZero()}
	}
	healthy := map[string][]Endpoint{}
	degraded := map[string][]Endpoint{}
	for i := range instances {
		inst := &instances[i]
		r := t.Routes[inst.Spec.Slug]
		if r == nil || r.Deleting || !inst.DeletionTimestamp.IsZero() || !owned(inst) {
			continue
		}
		ep, ok := endpoint(inst)
		if !ok {
			continue
		}
		switch inst.Status.Status {
		case slugwayv1.HealthHealthy:
			healthy[r.Slug] = append(healthy[r.Slug], ep)
		case slugwayv1.HealthDegraded:
			degraded[r.Slug] = append(degraded[r.Slug], ep)
		}
	}
	for slug, r := range t.Routes {
		if eps := healthy[slug]; len(eps) > 0 {
			r.Endpoints = eps
		} else if eps := degraded[slug]; len(eps) > 0 {
			r.Endpoints, r.Degraded = eps, true
		}
		slices.SortFunc(r.Endpoints, func(a, b Endpoint) int { return strings.Compare(a.Key, b.Key) })
	}
	return t
}

// owned reports whether the Owned condition is True for the current spec. A
// condition written for an older generation (the URL may have changed since) does not count.
func owned(inst *slugwayv1.Instance) bool {
	c := apimeta.FindStatusCondition(inst.Status.Conditions, slugwayv1.ConditionOwned)
	if c == nil || c.Status != metav1.ConditionTrue {
		return false
	}
	return c.ObservedGeneration == 0 || c.ObservedGeneration >= inst.Generation
}

func endpoint(inst *slugwayv1.Instance) (Endpoint, bool) {
	u, err := url.Parse(inst.Spec.URL)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return Endpoint{}, false
	}
	// h2c is cleartext by definition; an https instance negotiates HTTP/2 by ALPN instead.
	h2c := inst.Spec.AppProtocol == slugwayv1.AppProtocolH2C && u.Scheme == "http"
	health := slugwayv1.HealthHealthy
	if inst.Status.Status == slugwayv1.HealthDegraded {
		health = slugwayv1.HealthDegraded
	}
	return Endpoint{
		Key:    inst.Namespace + "/" + inst.Name,
		Scheme: u.Scheme,
		Host:   u.Host,
		Prefix: strings.TrimRight(u.EscapedPath(), "/"),
		H2C:    h2c,
		Health: health,
	}, true
}
