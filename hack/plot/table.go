package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// tables renders the results as the Markdown tables in docs/benchmarks.md: cost per
// run, CPU per process in steady state, and route propagation.
func tables(runs []run) string {
	rs := append([]run(nil), runs...)
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].HeartbeatRefresh != rs[j].HeartbeatRefresh {
			return refreshOrder(rs[i].HeartbeatRefresh) < refreshOrder(rs[j].HeartbeatRefresh)
		}
		return rs[i].Instances < rs[j].Instances
	})
	var b strings.Builder
	b.WriteString("| instances (slugs) | refresh | extra controller flags | time to all Healthy | instance status writes/min | per instance per 30 s | probes/s | apiserver req/s (slugway.io) | controller RSS peak | proxy RSS peak | queue depth peak / steady | queue wait p50 / p99 (steady) | reconcile p99 (steady) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		s := r.Steady
		if s == nil {
			s = &steady{}
		}
		tth := r.TimeToHealthy()
		fmt.Fprintf(&b, "| %d (%d) | %s | %s | %s | %.0f | %.2f | %.0f | %.1f (%.1f) | %.0f MiB | %.0f MiB | %.0f / %.0f | %s / %s | %s |\n",
			r.Instances, r.Slugs, r.HeartbeatRefresh, extraFlags(r.ControllerArgs), tth,
			s.InstanceWritesPerMin, s.WritesPerInstancePer30s, s.ProbesPerSecond,
			s.APIServerReqPerSec, s.APIServerSlugwayReqPerSec,
			r.ControllerRSSPeakMiB, r.ProxyRSSPeakMiB, r.QueueDepthPeak, s.QueueDepthEnd,
			decade(s.QueueWait.P50), decade(s.QueueWait.P99), dur(s.Reconcile.P99))
	}
	b.WriteString("\nCPU in steady state, in cores (of 2), per process:\n\n")
	procs := []string{"kube-apiserver", "etcd", "controller", "proxy", "harness"}
	b.WriteString("| instances | refresh | " + strings.Join(procs, " | ") + " |\n|---|---|" + strings.Repeat("---|", len(procs)) + "\n")
	for _, r := range rs {
		if r.Steady == nil {
			continue
		}
		fmt.Fprintf(&b, "| %d | %s |", r.Instances, r.HeartbeatRefresh)
		for _, p := range procs {
			fmt.Fprintf(&b, " %.3f |", r.Steady.CPUCores[p])
		}
		b.WriteString("\n")
	}
	b.WriteString("\nRoute propagation (status write sent → proxy answers accordingly), controller stopped:\n\n")
	b.WriteString("| instances | quiet: p50 / p99 (n) | under heartbeat writes: rate | p50 / p99 (n) | status write p50 | proxy CPU |\n|---|---|---|---|---|---|\n")
	for _, r := range rs {
		q, c := r.PropagationQuiet, r.PropagationChurn
		if q == nil {
			continue
		}
		row := fmt.Sprintf("| %d | %s / %s (%d%s) |", r.Instances, dur(q.P50), dur(q.P99), q.N, missed(q.Missed))
		if c != nil && c.ChurnWritesPerSec > 0 {
			row += fmt.Sprintf(" %.0f/s | %s / %s (%d%s) | %s | %.2f cores |", c.ChurnWritesPerSec, dur(c.P50), dur(c.P99), c.N, missed(c.Missed), dur(c.WriteP50), c.ProxyCPUCores)
		} else {
			row += " – | – | – | – |"
		}
		b.WriteString(row + "\n")
	}
	return b.String()
}

func missed(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d missed", n)
}

// extraFlags keeps the controller flags beyond the harness's fixed ones.
func extraFlags(args string) string {
	f := strings.Fields(args)
	var out []string
	for _, a := range f {
		if strings.HasPrefix(a, "--max-concurrent-reconciles") || strings.HasPrefix(a, "--probe-concurrency") {
			out = append(out, "`"+a+"`")
		}
	}
	if len(out) == 0 {
		return "–"
	}
	return strings.Join(out, " ")
}

func refreshOrder(s string) int {
	switch s {
	case "30s":
		return 0
	case "5m0s":
		return 1
	}
	return 2
}

// decade writes a quantile of a histogram with one bucket per decade (the workqueue's):
// above 1 s, interpolating inside a decade would invent precision, so it names the bucket.
func decade(s float64) string {
	if s < 1 {
		return dur(s)
	}
	lo := math.Pow(10, math.Floor(math.Log10(s)))
	return fmt.Sprintf("%g–%g s", lo, lo*10)
}

// dur writes seconds as ms below 10 s, else as s; negative means no data.
func dur(s float64) string {
	switch {
	case s < 0:
		return "–"
	case s < 10:
		return fmt.Sprintf("%.1f ms", s*1000)
	default:
		return fmt.Sprintf("%.0f s", s)
	}
}
