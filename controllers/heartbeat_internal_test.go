package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

func TestHeartbeatHealth(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { v := metav1.NewTime(now.Add(d)); return &v }
	ttl := 30 * time.Second
	cases := []struct {
		name  string
		last  *metav1.Time
		since time.Time
		want  slugwayv1.Health
	}{
		{"no heartbeat yet", nil, time.Time{}, slugwayv1.HealthUnknown},
		{"fresh", at(-10 * time.Second), time.Time{}, slugwayv1.HealthHealthy},
		// Stored to the second: a beat stored 30s ago happened up to 1s later, so it is not expired yet.
		{"at the TTL, within the stored second", at(-30 * time.Second), time.Time{}, slugwayv1.HealthHealthy},
		{"expired", at(-32 * time.Second), time.Time{}, slugwayv1.HealthUnreachable},
		// A leader that started 5s ago (after an outage) gives a full TTL before expiring anything.
		{"expired before this leader began", at(-120 * time.Second), now.Add(-5 * time.Second), slugwayv1.HealthHealthy},
		{"expired even counting from the leader's start", at(-120 * time.Second), now.Add(-31 * time.Second), slugwayv1.HealthUnreachable},
	}
	for _, c := range cases {
		hv, requeue := heartbeatHealth(c.last, ttl, now, c.since)
		if hv.health != c.want {
			t.Errorf("%s: %s, want %s (%s)", c.name, hv.health, c.want, hv.message)
		}
		if c.want == slugwayv1.HealthHealthy && requeue <= 0 {
			t.Errorf("%s: Healthy but no requeue to re-check at expiry", c.name)
		}
	}
}
