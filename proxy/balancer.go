package proxy

import (
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/slugway/slugway/proxy/routes"
)

// LB policies.
const (
	PolicyP2C        = "p2c"
	PolicyRoundRobin = "round-robin"
)

// backend is the proxy's live state for one endpoint. It outlives table rebuilds
// (the handler keeps one per routes.Endpoint.ID), so requests in flight and
// ejections survive a status change elsewhere in the table.
type backend struct {
	ep        routes.Endpoint        // as first seen; later tables may only change its Key (same ID)
	key       atomic.Pointer[string] // the instance's current namespace/name, for logs
	transport http.RoundTripper      // h2c and https instances, and what the pool cannot send
	pool      *upstreamPool          // the HTTP/1.1 fast path; nil for h2c and https instances
	m         *slugMetrics

	inflight     atomic.Int64
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 or past: in rotation
	failures     atomic.Int32 // consecutive connection failures
}

// ejected reports whether passive health took the backend out of rotation.
func (b *backend) ejected(now int64) bool {
	u := b.ejectedUntil.Load()
	return u != 0 && now < u
}

// eject takes the backend out of rotation for base·2^(failures-1), at most max.
func (b *backend) eject(base, max time.Duration) {
	n := b.failures.Add(1)
	d := base << min(n-1, 20)
	if d <= 0 || d > max {
		d = max
	}
	b.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	b.m.ejections.Inc()
}

// succeeded puts the backend back in rotation after a response.
func (b *backend) succeeded() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
		b.ejectedUntil.Store(0)
	}
}

// liveRoute is a routes.Route bound to live backends.
type liveRoute struct {
	slug     string
	backends []*backend
	deleting bool
	plain    bool // every backend is an http:// instance (the fast front end may serve it)
	m        *slugMetrics
	rr       atomic.Uint32
}

// pick chooses a backend that is not in tried: by the policy among those in
// rotation, or, when passive health ejected them all, among the ejected ones
// (a guess beats a certain 502). It returns nil when every backend was tried.
func (r *liveRoute) pick(policy string, tried []*backend) *backend {
	bs := r.backends
	if len(bs) == 1 {
		if len(tried) > 0 {
			return nil
		}
		return bs[0]
	}
	now := time.Now().UnixNano()
	usable := func(b *backend) bool { return !b.ejected(now) && !contains(tried, b) }
	if policy == PolicyRoundRobin {
		start := int(r.rr.Add(1))
		for i := range bs {
			if b := bs[(start+i)%len(bs)]; usable(b) {
				return b
			}
		}
	} else {
		i := rand.IntN(len(bs))
		j := rand.IntN(len(bs) - 1)
		if j >= i {
			j++
		}
		a, b := bs[i], bs[j]
		switch ua, ub := usable(a), usable(b); {
		case ua && ub:
			if b.inflight.Load() < a.inflight.Load() {
				return b
			}
			return a
		case ua:
			return a
		case ub:
			return b
		}
		if c := leastLoaded(bs, usable); c != nil {
			return c
		}
	}
	return leastLoaded(bs, func(b *backend) bool { return !contains(tried, b) })
}

// tryEach calls try with one backend per attempt, picked by the policy and never
// one already tried, counted in flight while try runs, until try reports that
// there is nothing to try again, or every backend was tried.
func (r *liveRoute) tryEach(policy string, try func(b *backend, attempt int) (again bool)) {
	var triedBuf [8]*backend
	tried := triedBuf[:0]
	for attempt := 0; ; attempt++ {
		b := r.pick(policy, tried)
		if b == nil {
			return
		}
		tried = append(tried, b)
		b.inflight.Add(1)
		again := try(b, attempt)
		b.inflight.Add(-1)
		if !again {
			return
		}
	}
}

func leastLoaded(bs []*backend, ok func(*backend) bool) *backend {
	var best *backend
	for _, b := range bs {
		if ok(b) && (best == nil || b.inflight.Load() < best.inflight.Load()) {
			best = b
		}
	}
	return best
}

func contains(bs []*backend, b *backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}
