package health

import (
	"testing"
	"time"
)

func TestTrackerThresholds(t *testing.T) {
	ok := Result{OK: true, Latency: 10 * time.Millisecond}
	slow := Result{OK: true, Latency: 2 * time.Second}
	fail := Result{OK: false}
	th := Thresholds{Healthy: 2, Unhealthy: 3, DegradedAfter: time.Second}

	steps := []struct {
		in   Result
		want Health
	}{
		{ok, Healthy},       // from Unknown the first result decides
		{fail, Healthy},     // 1 failure
		{fail, Healthy},     // 2 failures
		{ok, Healthy},       // a success resets the failure count
		{fail, Healthy},     // 1
		{fail, Healthy},     // 2
		{fail, Unreachable}, // 3 in a row: down
		{ok, Unreachable},   // 1 success of the 2 needed
		{fail, Unreachable}, // resets
		{ok, Unreachable},   // 1
		{ok, Healthy},       // 2: up again
		{slow, Degraded},    // slower than DegradedAfter
		{ok, Healthy},       // fast again
	}
	var tr Tracker
	if tr.Health() != Unknown {
		t.Fatalf("zero Tracker is %s, want Unknown", tr.Health())
	}
	for i, s := range steps {
		before := tr.Health()
		changed := tr.Observe(s.in, th)
		if got := tr.Health(); got != s.want {
			t.Fatalf("step %d: health %s, want %s", i, got, s.want)
		}
		if changed != (before != s.want) {
			t.Fatalf("step %d: changed=%v but health went %s -> %s", i, changed, before, s.want)
		}
	}
}

func TestTrackerFirstFailureIsUnreachable(t *testing.T) {
	var tr Tracker
	if !tr.Observe(Result{}, Thresholds{Healthy: 1, Unhealthy: 3}) || tr.Health() != Unreachable {
		t.Fatalf("a failing first probe should report Unreachable at once, got %s", tr.Health())
	}
}

func TestProbeURL(t *testing.T) {
	cases := []struct{ url, path, want string }{
		{"http://10.0.0.1:8080", "/healthz", "http://10.0.0.1:8080/healthz"},
		{"http://10.0.0.1:8080/", "/healthz", "http://10.0.0.1:8080/healthz"},
		{"http://h/base", "/healthz", "http://h/base/healthz"},
		{"http://h/base/", "/ready?full=1", "http://h/base/ready?full=1"},
		{"https://h", "", "https://h/"},
	}
	for _, c := range cases {
		got, err := ProbeURL(c.url, c.path)
		if err != nil || got != c.want {
			t.Errorf("ProbeURL(%q, %q) = %q, %v; want %q", c.url, c.path, got, err, c.want)
		}
	}
}

func TestHostPort(t *testing.T) {
	cases := map[string]string{
		"http://h":          "h:80",
		"https://h":         "h:443",
		"http://h:9311/x":   "h:9311",
		"http://[::1]:8080": "[::1]:8080",
	}
	for in, want := range cases {
		if got, err := HostPort(in); err != nil || got != want {
			t.Errorf("HostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
