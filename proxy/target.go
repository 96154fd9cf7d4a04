package proxy

import (
	"github.com/slugway/slugway/proxy/hostroute"
	"github.com/slugway/slugway/proxy/slugpath"
)

// The answers of routing by host that path routing does not have.
var (
	errHostNoSlug = &slugpath.Error{Status: 404, Msg: "unknown slug: the host names a host domain but its first label is not a slug; request <slug>.<domain>"}
	errMisdirect  = &slugpath.Error{Status: 421, Msg: "misdirected request: the TLS server name and the request's host name different slugs; use a connection made for this host name"}
)

// routeTarget splits the request's target and finds its slug: from the host
// name when it is <slug>.<domain> for one of the host domains (on TLS, the
// server name first: package hostroute), else from the path's first segment.
// The path is the client's either way. lookup calls it for both servers.
func (h *Handler) routeTarget(req *request) (target, *slugpath.Error) {
	var slug string
	var k hostroute.Kind
	if req.tls {
		slug, k = h.hosts.TLS(req.sni, req.host)
	} else {
		slug, k = h.hosts.Host(req.host)
	}
	switch k {
	case hostroute.Slug:
		path, query, hasQuery, err := slugpath.ParseTarget(req.rawTarget)
		return target{slug: slug, path: path, query: query, hasQuery: hasQuery}, err
	case hostroute.NoSlug:
		return target{}, errHostNoSlug
	case hostroute.Misdirected:
		return target{}, errMisdirect
	}
	return parseTarget(req.rawTarget)
}
