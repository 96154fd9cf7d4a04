package proxy

import (
	"net/http"
	"sync/atomic"
)

// The retry policy, for both servers. A request is tried on one backend per
// attempt (liveRoute.tryEach); after a failure, failed decides whether another
// backend gets it. A pooled connection the instance had closed is not a failed
// attempt: the upstream client replaces it first (roundTrip).

// failed records a failed attempt at b (ejecting b for connection failures)
// and reports whether the request may be sent to another instance.
// replayable: nothing of its body was consumed.
func (h *Handler) failed(rt *liveRoute, b *backend, kind errKind, attempt int, err error, replayable, idempotent bool) bool {
	rt.m.upstreamError(kind.String())
	if ejects(kind) {
		b.eject(h.opts.EjectBase, h.opts.EjectMax)
	}
	h.log.V(1).Info("upstream attempt failed", "slug", rt.slug, "instance", *b.key.Load(), "kind", kind.String(), "attempt", attempt, "error", err.Error())
	if attempt >= h.opts.MaxRetries || !replayable {
		return false
	}
	// Dial failures never reached an instance: always safe. Other failures
	// before any response byte: only idempotent requests, within the budget.
	if kind != errDial && (kind == errTimeout || !idempotent || !h.budget.withdraw()) {
		return false
	}
	rt.m.retries.Inc()
	return true
}

// ejects reports the failures that take an instance out of rotation: connection failures.
func ejects(kind errKind) bool { return kind == errDial || kind == errReset }

// safeMethod reports a method that may be sent again after it may have reached
// an instance (request.scan adds requests with an Idempotency-Key).
func safeMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// retryBudget bounds the retries of requests that may have reached an instance:
// each request earns ratio of a retry, up to burst retries saved. Dial failures,
// which never reached an instance, do not spend it, nor do replaced stale
// pooled connections.
type retryBudget struct {
	milli   atomic.Int64 // thousandths of a retry
	earn    int64
	burstMs int64
}

func newRetryBudget(ratio float64, burst int) *retryBudget {
	b := &retryBudget{earn: int64(ratio * 1000), burstMs: int64(burst) * 1000}
	b.milli.Store(b.burstMs)
	return b
}

func (b *retryBudget) deposit() {
	if b.milli.Load() < b.burstMs {
		b.milli.Add(b.earn)
	}
}

func (b *retryBudget) withdraw() bool {
	if b.milli.Add(-1000) >= 0 {
		return true
	}
	b.milli.Add(1000)
	return false
}
