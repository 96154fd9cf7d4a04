package proxy

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// unknownSlug labels requests that named no known slug, so that arbitrary paths
// cannot create metric series.
const unknownSlug = "(unknown)"

type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	upstreamErr *prometheus.CounterVec
	retries     *prometheus.CounterVec
	ejections   *prometheus.CounterVec
	endpoints   *prometheus.GaugeVec
	builds      prometheus.Counter
	propagation prometheus.Histogram
	tableSlugs  prometheus.Gauge
	handoffs    *prometheus.CounterVec
	refused     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slugway_proxy_requests_total", Help: "Requests answered, by slug and HTTP status code.",
		}, []string{"slug", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "slugway_proxy_request_duration_seconds", Help: "Time from a request's arrival to the end of its response, by slug.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"slug"}),
		upstreamErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slugway_proxy_upstream_errors_total", Help: "Failed attempts to get a response from an instance, by slug and kind (dial, reset, timeout, other; stale: a pooled connection the instance had closed, replaced by a fresh one).",
		}, []string{"slug", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slugway_proxy_retries_total", Help: "Requests sent again to another instance, by slug.",
		}, []string{"slug"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slugway_proxy_ejections_total", Help: "Instances taken out of rotation by passive health checking, by slug.",
		}, []string{"slug"}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slugway_proxy_routable_endpoints", Help: "Instances the route table sends a slug's traffic to.",
		}, []string{"slug"}),
		builds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "slugway_proxy_route_table_builds_total", Help: "Route tables built from the watched Instances and ServiceAccounts.",
		}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "slugway_proxy_route_propagation_seconds", Help: "Time from a watch event to the route table that includes it serving requests.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		tableSlugs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "slugway_proxy_route_table_slugs", Help: "Slugs in the current route table.",
		}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slugway_proxy_net_http_handoffs_total",
			Help: "Client connections the fast HTTP/1.1 front end handed to net/http, by reason (the request was not plain HTTP/1.1, its body was large, or its route was not a plain http:// one).",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slugway_proxy_refused_requests_total",
			Help: "Request heads refused for ambiguous framing or syntax (answered 400 or 501, connection closed), by reason, on either server.",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.refused, m.requests, m.duration, m.upstreamErr, m.retries, m.ejections, m.endpoints, m.builds, m.propagation, m.tableSlugs, m.handoffs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// slugMetrics are one slug's series, resolved once so that the request path
// does no label hashing.
type slugMetrics struct {
	slug      string
	vecs      *metrics
	duration  prometheus.Observer
	retries   prometheus.Counter
	ejections prometheus.Counter
	codes     [500]atomic.Pointer[prometheus.Counter] // index: status-100
}

func (m *metrics) forSlug(slug string) *slugMetrics {
	return &slugMetrics{
		slug:      slug,
		vecs:      m,
		duration:  m.duration.WithLabelValues(slug),
		retries:   m.retries.WithLabelValues(slug),
		ejections: m.ejections.WithLabelValues(slug),
	}
}

func (s *slugMetrics) count(code int) {
	if code < 100 || code > 599 {
		s.vecs.requests.WithLabelValues(s.slug, strconv.Itoa(code)).Inc()
		return
	}
	p := s.codes[code-100].Load()
	if p == nil {
		c := s.vecs.requests.WithLabelValues(s.slug, strconv.Itoa(code))
		p = &c
		s.codes[code-100].Store(p)
	}
	(*p).Inc()
}

func (s *slugMetrics) upstreamError(kind string) {
	s.vecs.upstreamErr.WithLabelValues(s.slug, kind).Inc()
}

// forget removes every series of a slug that left the table, so that churning slug
// names cannot grow /metrics without bound.
func (m *metrics) forget(slug string) {
	m.endpoints.DeleteLabelValues(slug)
	m.duration.DeleteLabelValues(slug)
	m.retries.DeleteLabelValues(slug)
	m.ejections.DeleteLabelValues(slug)
	m.requests.DeletePartialMatch(prometheus.Labels{"slug": slug})
	m.upstreamErr.DeletePartialMatch(prometheus.Labels{"slug": slug})
}
