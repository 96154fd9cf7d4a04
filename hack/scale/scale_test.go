package main

import (
	"math"
	"strings"
	"testing"
)

const scrapeA = `# HELP workqueue_depth Current depth of workqueue
# TYPE workqueue_depth gauge
workqueue_depth{controller="instance",name="instance"} 7
workqueue_depth{controller="serviceaccount",name="serviceaccount"} 1
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="PATCH"} 10
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="GET"} 4
weird{msg="a \"quoted\", comma},brace"} 2.5e+00
# TYPE h histogram
h_bucket{name="instance",le="0.01"} 10
h_bucket{name="instance",le="0.1"} 10
h_bucket{name="instance",le="1"} 10
h_bucket{name="instance",le="+Inf"} 10
h_sum{name="instance"} 0.05
h_count{name="instance"} 10
`

const scrapeB = `# TYPE h histogram
h_bucket{name="instance",le="0.01"} 10
h_bucket{name="instance",le="0.1"} 60
h_bucket{name="instance",le="1"} 110
h_bucket{name="instance",le="+Inf"} 110
h_sum{name="instance"} 30.05
h_count{name="instance"} 110
workqueue_depth{controller="instance",name="instance"} 0
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="PATCH"} 70
rest_client_requests_total{code="409",host="127.0.0.1:6443",method="PATCH"} 2
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="GET"} 4
`

func mustParse(t *testing.T, s string) metrics {
	t.Helper()
	m, err := parseMetrics(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseMetrics(t *testing.T) {
	a := mustParse(t, scrapeA)
	if got := a.sum("workqueue_depth", map[string]string{"name": "instance"}); got != 7 {
		t.Errorf("instance queue depth = %v, want 7", got)
	}
	if got := a.sum("weird", map[string]string{"msg": `a "quoted", comma},brace`}); got != 2.5 {
		t.Errorf("escaped label value not parsed: got %v, want 2.5", got)
	}
	b := mustParse(t, scrapeB)
	by := b.sumBy("rest_client_requests_total", nil, "method")
	if by["PATCH"] != 72 || by["GET"] != 4 {
		t.Errorf("sumBy method = %v, want PATCH 72 (both codes) and GET 4", by)
	}
}

func TestHistogramDeltaAndQuantile(t *testing.T) {
	h := histDelta(mustParse(t, scrapeA), mustParse(t, scrapeB), "h", map[string]string{"name": "instance"})
	if h.Count != 100 || math.Abs(h.Sum-30) > 1e-9 {
		t.Fatalf("delta count=%v sum=%v, want 100 and 30: observations before the window leak in", h.Count, h.Sum)
	}
	// 50 observations in (0.01, 0.1], 50 in (0.1, 1]: the median is the top of the first.
	if q := h.quantile(.5); math.Abs(q-0.1) > 1e-9 {
		t.Errorf("p50 = %v, want 0.1", q)
	}
	if q := h.quantile(.99); math.Abs(q-(0.1+0.9*49/50)) > 1e-9 {
		t.Errorf("p99 = %v, want linear interpolation inside (0.1, 1]", q)
	}
	if !math.IsNaN((histogram{}).quantile(.5)) {
		t.Error("an empty histogram must have no quantile")
	}
	inf := histogram{Buckets: []bucket{{1, 0}, {math.Inf(1), 5}}}
	if q := inf.quantile(.99); q != 1 {
		t.Errorf("quantile in the +Inf bucket = %v, want the largest finite bound 1", q)
	}
}

func TestProcParsers(t *testing.T) {
	st, err := parseStat("4242 (kube apiserver) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 1000 2000000 5000")
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "kube apiserver" || st.PPid != 17 || st.CPUSecond != 3 {
		t.Errorf("parseStat = %+v, want comm with its space, ppid 17, 3 CPU seconds", st)
	}
	rss, err := parseVmRSS("Name:\tslugway\nVmPeak:\t 1 kB\nVmRSS:\t  153600 kB\n")
	if err != nil || rss != 150 {
		t.Errorf("parseVmRSS = %v, %v; want 150 MiB", rss, err)
	}
	if _, err := parseVmRSS("Name: x\n"); err == nil {
		t.Error("a status without VmRSS must be an error")
	}
}

func TestPercentile(t *testing.T) {
	var xs []float64
	for i := 1; i <= 100; i++ {
		xs = append(xs, float64(i)/1000)
	}
	if p := pct(xs, .5); p != 0.05 {
		t.Errorf("p50 = %v, want 0.05", p)
	}
	if p := pct(xs, .99); p != 0.099 {
		t.Errorf("p99 = %v, want 0.099", p)
	}
	if p := pct(xs, 1); p != 0.1 {
		t.Errorf("max = %v, want 0.1", p)
	}
	if p := pct(nil, .5); p != -1 {
		t.Errorf("pct of nothing = %v, want -1", p)
	}
}

func TestMarkdownRow(t *testing.T) {
	r := &result{Instances: 10000, Slugs: 1001, HeartbeatRefresh: "30s", TimeToHealthySeconds: 200, Healthy: 10000,
		Steady: &steady{InstanceWritesPerMin: 20000, WritesPerInstancePer30s: 1, ProbesPerSecond: 1000}}
	md := r.Markdown()
	for _, want := range []string{"| 10000 | 1001 | 30s | 200.0 s |", "| 20000 | 1.00 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	r.Healthy = 6000
	if md := r.Markdown(); !strings.Contains(md, "| > 200 s (6000 Healthy) |") {
		t.Errorf("a run that did not converge must say so, not show a time to Healthy:\n%s", md)
	}
}
