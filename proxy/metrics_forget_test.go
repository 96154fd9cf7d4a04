package proxy

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestForgetDeletesEverySlugSeries: after a slug leaves the table, none of its series
// remain, in any per-slug family; other slugs' series stay. Churning 100 slug names
// leaves /metrics as it was.
func TestForgetDeletesEverySlugSeries(t *testing.T) {
	m := newMetrics()
	touch := func(slug string) {
		sm := m.forSlug(slug)
		sm.count(200)
		sm.count(503)
		sm.count(999) // outside the cached range
		sm.duration.Observe(0.01)
		sm.retries.Inc()
		sm.ejections.Inc()
		sm.upstreamError("dial")
		sm.upstreamError("reset")
		m.endpoints.WithLabelValues(slug).Set(2)
	}
	families := func() int {
		return testutil.CollectAndCount(m.requests) + testutil.CollectAndCount(m.duration) + testutil.CollectAndCount(m.upstreamErr) +
			testutil.CollectAndCount(m.retries) + testutil.CollectAndCount(m.ejections) + testutil.CollectAndCount(m.endpoints)
	}
	touch("stays")
	base := families()
	if base != 3+1+2+1+1+1 {
		t.Fatalf("%d series for one slug, want 9", base)
	}
	for i := range 100 {
		slug := fmt.Sprintf("churn-%d", i)
		touch(slug)
		m.forget(slug)
	}
	if got := families(); got != base {
		t.Fatalf("%d per-slug series after 100 slugs came and went, want the %d of the slug that stayed", got, base)
	}
	for name, c := range map[string]int{
		"slugway_proxy_requests_total": 3, "slugway_proxy_request_duration_seconds": 1, "slugway_proxy_upstream_errors_total": 2,
		"slugway_proxy_retries_total": 1, "slugway_proxy_ejections_total": 1, "slugway_proxy_routable_endpoints": 1,
	} {
		if got := testutil.CollectAndCount(m.reg, name); got != c {
			t.Errorf("%s: %d series, want %d", name, got, c)
		}
	}
	m.forget("stays")
	if got := families(); got != 0 {
		t.Fatalf("%d series left after the last slug went away", got)
	}
}
