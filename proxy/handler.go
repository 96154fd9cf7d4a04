package proxy

import (
	"maps"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slugway/slugway/proxy/dashboard"
	"github.com/slugway/slugway/proxy/hostroute"
	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/proxy/wire"
)

// Handler is the data plane: it routes /<slug>/... to the slug's instances
// (the pipeline, pipeline.go). Its route table is swapped atomically by
// SetTable; serving a request takes no lock. It is also net/http's handler
// (server_nethttp.go).
type Handler struct {
	opts    Options
	log     logr.Logger
	metrics *metrics
	budget  *retryBudget
	h1, h2c http.RoundTripper
	hosts   *hostroute.Domains // nil: no routing by host
	hostErr error              // Options.HostDomains' error, returned by New

	table atomic.Pointer[liveTable]

	mu      sync.Mutex // serializes SetTable
	slugs   map[string]*slugMetrics
	unknown *slugMetrics

	stats *dashboard.Recorder // per-slug figures for the dashboard; nil without it

	hijacked sync.Map // upgraded (WebSocket) connections: net.Conn → struct{}, closed on shutdown
}

// NewHandler returns a Handler with no route table yet: every request is answered 503
// with Retry-After until the first SetTable.
func NewHandler(o Options) *Handler {
	o.defaults()
	m := newMetrics()
	h := &Handler{
		opts:    o,
		log:     o.Logger,
		metrics: m,
		budget:  newRetryBudget(o.RetryBudgetRatio, o.RetryBudgetBurst),
		slugs:   map[string]*slugMetrics{},
		unknown: m.forSlug(unknownSlug),
	}
	h.h1, h.h2c = newTransports(&o)
	h.hosts, h.hostErr = hostroute.New(o.HostDomains)
	if o.Dashboard {
		h.stats = dashboard.NewRecorder()
	}
	h.table.Store(&liveTable{routes: map[string]*liveRoute{}})
	return h
}

// SetTable makes t the route table. Its cost is proportional to what changed: a
// slug whose *routes.Route is the one the current table was made from (routes.Table.With
// shares unchanged routes) keeps its live route as is; a changed slug gets a new live
// route that keeps the backends (requests in flight, ejections) of endpoints that
// stay; the backends of endpoints and slugs that left are forgotten.
func (h *Handler) SetTable(t *routes.Table) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.table.Load()
	live := &liveTable{routes: maps.Clone(old.routes), from: t, loaded: true}
	for slug, r := range t.Routes {
		if old.from.Lookup(slug) != r {
			live.routes[slug] = h.bind(slug, r, old.routes[slug])
		}
	}
	for slug, lr := range old.routes {
		if _, ok := t.Routes[slug]; !ok {
			delete(live.routes, slug)
			closeDropped(lr.backends, nil)
			delete(h.slugs, slug)
			h.metrics.forget(slug)
		}
	}
	h.table.Store(live)
	h.metrics.builds.Inc()
	h.metrics.tableSlugs.Set(float64(len(live.routes)))
}

// bind makes the live route of one slug's new Route, reusing prev's backends (nil:
// the slug is new) for endpoints with the same ID. Backends are per slug: two slugs
// routing to one address do not share in-flight counts or ejections.
func (h *Handler) bind(slug string, r *routes.Route, prev *liveRoute) *liveRoute {
	sm := h.slugs[slug]
	if sm == nil {
		sm = h.metrics.forSlug(slug)
		h.slugs[slug] = sm
	}
	var was map[string]*backend
	if prev != nil && len(prev.backends) > 0 {
		was = make(map[string]*backend, len(prev.backends))
		for _, b := range prev.backends {
			was[b.ep.ID()] = b
		}
	}
	lr := &liveRoute{slug: slug, deleting: r.Deleting, m: sm, backends: make([]*backend, 0, len(r.Endpoints))}
	now := make(map[string]*backend, len(r.Endpoints))
	for _, ep := range r.Endpoints {
		id := ep.ID()
		b := now[id] // two instances with one URL share a backend
		if b == nil {
			b = was[id]
		}
		if b == nil {
			b = &backend{ep: ep, m: sm, transport: h.h1}
			if ep.H2C {
				b.transport = h.h2c
			} else if ep.Scheme == "http" {
				b.pool = newUpstreamPool(&h.opts, ep.Host)
			}
		}
		if b.key.Load() == nil || *b.key.Load() != ep.Key {
			k := ep.Key // b.ep is read by requests in flight: it stays as created (same ID)
			b.key.Store(&k)
		}
		now[id] = b
		lr.backends = append(lr.backends, b)
	}
	lr.plain = true
	for _, b := range lr.backends {
		lr.plain = lr.plain && b.pool != nil
	}
	if prev != nil {
		closeDropped(prev.backends, now)
	}
	h.metrics.endpoints.WithLabelValues(slug).Set(float64(len(lr.backends)))
	return lr
}

// closeDropped closes the upstream pools of the backends not kept in kept, keyed by
// endpoint ID. Requests in flight finish; their connections are not kept.
func closeDropped(bs []*backend, kept map[string]*backend) {
	for _, b := range bs {
		if b.pool != nil && kept[b.ep.ID()] != b {
			b.pool.close()
		}
	}
}

// Registry is the Prometheus registry holding the proxy's metrics.
func (h *Handler) Registry() *prometheus.Registry { return h.metrics.reg }

// trusted reports whether X-Forwarded-* headers from this peer may be kept.
func (h *Handler) trusted(remoteIP string) bool {
	if len(h.opts.TrustedProxies) == 0 {
		return false
	}
	ip, err := netip.ParseAddr(remoteIP)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range h.opts.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// countRefused counts a request head refused for its framing or syntax, on
// either server (the front end, or a framing.Conn in front of net/http).
func (h *Handler) countRefused(e *wire.RequestError) {
	h.metrics.refused.WithLabelValues(e.Reason).Inc()
}
