package proxy

import (
	"net/http"

	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/proxy/wire"
)

// liveTable is the route table requests read: each slug's route bound to live backends.
type liveTable struct {
	routes map[string]*liveRoute
	// from is the table this one was bound from: a slug whose *routes.Route is
	// still from's is unchanged.
	from *routes.Table
	// loaded is false until the first SetTable: a starting proxy does not know which
	// slugs exist, so it answers 503 (retry) rather than 404 (no such slug).
	loaded bool
}

// routed is the route lookup's result: the slug's live route, or the answer
// the proxy gives itself (code, msg, slug and an extra field such as
// Retry-After). sm is the series the request is counted in.
type routed struct {
	rt    *liveRoute
	sm    *slugMetrics
	code  int
	msg   string
	slug  string
	extra wire.Field
}

// lookup is the one route lookup of both servers: it parses the request
// target into req.target, takes the slug from the host name or the path
// (routeTarget), and finds the slug's route in the current table.
// It takes no lock and allocates nothing.
func (h *Handler) lookup(req *request) routed {
	if req.method == http.MethodConnect {
		return routed{sm: h.unknown, code: http.StatusMethodNotAllowed, msg: "CONNECT is not supported: slugway is a reverse proxy, not a forward proxy",
			extra: wire.Field{Name: "Allow", Value: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"}}
	}
	t, perr := h.routeTarget(req)
	if perr != nil {
		return routed{sm: h.unknown, code: perr.Status, msg: perr.Msg}
	}
	req.target = t
	table := h.table.Load()
	rt := table.routes[t.slug]
	switch {
	case rt == nil && !table.loaded:
		return routed{sm: h.unknown, code: http.StatusServiceUnavailable, msg: "starting: the route table is not loaded yet", slug: t.slug,
			extra: wire.Field{Name: "Retry-After", Value: "1"}}
	case rt == nil:
		return routed{sm: h.unknown, code: http.StatusNotFound, msg: "unknown slug", slug: t.slug}
	case len(rt.backends) == 0:
		msg := "no healthy instance"
		if rt.deleting {
			msg = "the slug is being deleted"
		}
		return routed{sm: rt.m, code: http.StatusServiceUnavailable, msg: msg, slug: t.slug, extra: wire.Field{Name: "Retry-After", Value: "5"}}
	}
	return routed{rt: rt, sm: rt.m}
}

// Route reports what the current table holds for a slug: whether it is known
// and how many endpoints it routes to. Tests and debugging use it.
func (h *Handler) Route(slug string) (known bool, endpoints int) {
	r := h.table.Load().routes[slug]
	if r == nil {
		return false, 0
	}
	return true, len(r.backends)
}
