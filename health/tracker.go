package health

import "time"

// Health is an instance's health in OpenOrch's words.
type Health string

const (
	Unknown     Health = "Unknown"
	Healthy     Health = "Healthy"
	Degraded    Health = "Degraded"
	Unreachable Health = "Unreachable"
)

// Thresholds decide when probe results flip an instance's health.
type Thresholds struct {
	// Healthy is how many consecutive successes make a failing instance healthy again.
	Healthy int
	// Unhealthy is how many consecutive failures make a healthy instance Unreachable.
	Unhealthy int
	// DegradedAfter: a success slower than this counts as Degraded rather than Healthy.
	DegradedAfter time.Duration
}

// Tracker applies Thresholds to a stream of Results. It is a pure state machine.
//
// From Unknown the first result decides at once, so a new instance becomes
// routable (or is reported Unreachable) after one probe. After that the
// thresholds apply: it takes Unhealthy failures in a row to leave
// Healthy/Degraded, and Healthy successes in a row to leave Unreachable.
// Moving between Healthy and Degraded follows the latest success directly.
type Tracker struct {
	health    Health
	successes int
	failures  int
}

// Health returns the current thresholded health.
func (t *Tracker) Health() Health {
	if t.health == "" {
		return Unknown
	}
	return t.health
}

// Observe feeds one result and reports whether the health changed.
func (t *Tracker) Observe(r Result, th Thresholds) bool {
	before := t.Health()
	if r.OK {
		t.successes++
		t.failures = 0
		up := Healthy
		if th.DegradedAfter > 0 && r.Latency > th.DegradedAfter {
			up = Degraded
		}
		switch before {
		case Unknown, Healthy, Degraded:
			t.health = up
		case Unreachable:
			if t.successes >= max(th.Healthy, 1) {
				t.health = up
			}
		}
	} else {
		t.failures++
		t.successes = 0
		switch before {
		case Unknown:
			t.health = Unreachable
		case Healthy, Degraded:
			if t.failures >= max(th.Unhealthy, 1) {
				t.health = Unreachable
			}
		}
	}
	return t.Health() != before
}
