package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slugway/slugway/proxy/dashboard"
	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/proxy/slugpath"
)

// Handler is the data plane: it routes /<slug>/... to the slug's instances. Its
// route table is swapped atomically by SetTable; serving a request takes no lock.
type Handler struct {
	opts    Options
	log     logr.Logger
	metrics *metrics
	budget  *retryBudget
	h1, h2c http.RoundTripper

	table atomic.Pointer[liveTable]

	mu      sync.Mutex // serializes SetTable
	slugs   map[string]*slugMetrics
	unknown *slugMetrics

	stats *dashboard.Recorder // per-slug figures for the dashboard; nil without it

	upgrades sync.WaitGroup // hijacked (WebSocket) connections
	hijacked sync.Map       // net.Conn → struct{}, closed on shutdown
}

type liveTable struct {
	routes map[string]*liveRoute
	// from is the table this one was bound from: a slug whose *routes.Route is
	// still from's is unchanged.
	from *routes.Table
	// loaded is false until the first SetTable: a starting proxy does not know which
	// slugs exist, so it answers 503 (retry) rather than 404 (no such slug).
	loaded bool
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
	h.h1, h.h2c = newTransports(o)
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

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code, sm, abort := h.serve(w, r)
	h.record(sm, code, time.Since(start), r.Method, r.RequestURI, r.Proto, r.RemoteAddr, abort)
	if abort {
		panic(http.ErrAbortHandler) // the upstream body broke: break the client's response too
	}
}

// record counts an answered request and writes its access log line.
func (h *Handler) record(sm *slugMetrics, code int, d time.Duration, method, target, proto, remote string, abort bool) {
	sm.count(code)
	sm.duration.Observe(d.Seconds())
	h.stats.Observe(sm.slug, code, d)
	if h.opts.AccessLog { // copies: the fast front end's strings point into its read buffer
		h.log.Info("access", "slug", sm.slug, "method", strings.Clone(method), "target", strings.Clone(target), "proto", proto,
			"status", code, "duration", d, "remote", remote, "aborted", abort)
	}
}

// codeClientGone is recorded when the client went away before the response (nginx's 499).
const codeClientGone = 499

// serve handles one request and returns the status it answered with.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (code int, sm *slugMetrics, abort bool) {
	if r.Method == http.MethodConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		return writeError(w, http.StatusMethodNotAllowed, "CONNECT is not supported: slugway is a reverse proxy, not a forward proxy", ""), h.unknown, false
	}
	slug, path, query, hasQuery, perr := slugpath.Parse(r.RequestURI)
	if perr != nil {
		return writeError(w, perr.Status, perr.Msg, ""), h.unknown, false
	}
	table := h.table.Load()
	rt := table.routes[slug]
	if rt == nil {
		if !table.loaded {
			w.Header()["Retry-After"] = retryStarting
			return writeError(w, http.StatusServiceUnavailable, "starting: the route table is not loaded yet", slug), h.unknown, false
		}
		return writeError(w, http.StatusNotFound, "unknown slug", slug), h.unknown, false
	}
	if len(rt.backends) == 0 {
		w.Header()["Retry-After"] = retryAfter
		msg := "no healthy instance"
		if rt.deleting {
			msg = "the slug is being deleted"
		}
		return writeError(w, http.StatusServiceUnavailable, msg, slug), rt.m, false
	}
	if max := h.opts.MaxRequestBodyBytes; max > 0 && r.ContentLength > max {
		return writeError(w, http.StatusRequestEntityTooLarge, "request body too large: the limit is "+strconv.FormatInt(max, 10)+" bytes", slug), rt.m, false
	}
	h.budget.deposit()
	code, abort = h.forward(w, r, rt, path, query, hasQuery)
	return code, rt.m, abort
}

var (
	retryAfter    = []string{"5"}
	retryStarting = []string{"1"}
)

type errorBody struct {
	Error string `json:"error"`
	Slug  string `json:"slug,omitempty"`
}

// writeError answers with a small JSON body. It never includes upstream addresses.
func writeError(w http.ResponseWriter, code int, msg, slug string) int {
	b := errorJSON(msg, slug)
	hdr := w.Header()
	hdr["Content-Type"] = jsonType
	hdr["X-Content-Type-Options"] = nosniff
	hdr["Cache-Control"] = noStore
	hdr.Del("Content-Length")
	w.WriteHeader(code)
	_, _ = w.Write(b)
	return code
}

// errorJSON is the body of the proxy's own error responses, newline-terminated.
func errorJSON(msg, slug string) []byte {
	b, _ := json.Marshal(errorBody{Error: msg, Slug: slug})
	return append(b, '\n')
}

var (
	jsonType = []string{"application/json"}
	nosniff  = []string{"nosniff"}
	noStore  = []string{"no-store"}
)

// errKind classifies a failed attempt.
type errKind int

const (
	errOther   errKind = iota
	errDial            // never reached the instance: safe to send elsewhere
	errReset           // the connection broke before a response
	errTimeout         // no response in time
	errClient          // the client went away
	errBodyTooLarge
	errBody // reading the client's body failed
)

func (k errKind) String() string {
	return [...]string{"other", "dial", "reset", "timeout", "client", "body-too-large", "body"}[k]
}

// dialError marks errors of the proxy's dialer, whatever the Dial hook returns.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func classify(r *http.Request, err error) errKind {
	if r.Context().Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		return errClient
	}
	return classifyErr(err)
}

// classifyErr classifies a failure that is not the client's going away.
func classifyErr(err error) errKind {
	var de *dialError
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return errBodyTooLarge
	case errors.As(err, &de):
		return errDial // even a dial timeout never reached the instance
	case errors.Is(err, errClientBody):
		return errBody
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isConnReset(err):
		return errReset
	}
	return errOther
}

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

// Route reports what the current table holds for a slug: whether it is known
// and how many endpoints it routes to. Tests and debugging use it.
func (h *Handler) Route(slug string) (known bool, endpoints int) {
	r := h.table.Load().routes[slug]
	if r == nil {
		return false, 0
	}
	return true, len(r.backends)
}
