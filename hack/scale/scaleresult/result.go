// Package scaleresult is the result of one hack/scale run, as JSON in
// docs/scale-data: hack/scale writes it, hack/plot reads it.
package scaleresult

import (
	"fmt"
	"strings"
)

// Result is what one run measured; hack/plot reads a set of them.
type Result struct {
	Date      string `json:"date"`
	Machine   string `json:"machine"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
	Command   string `json:"command"`

	Instances        int    `json:"instances"`
	Slugs            int    `json:"slugs"`
	Ports            int    `json:"ports"`
	HeartbeatRefresh string `json:"heartbeatRefresh"`
	Webhooks         bool   `json:"webhooks"`
	ControllerArgs   string `json:"controllerArgs"`
	ProxyArgs        string `json:"proxyArgs"`

	CreateSeconds             float64 `json:"createSeconds"`
	CreatesPerSecond          float64 `json:"createsPerSecond"`
	Healthy                   int     `json:"healthy"`
	TimeToHealthySeconds      float64 `json:"timeToHealthySeconds"`
	HealthyAfterCreateSeconds float64 `json:"healthyAfterCreateSeconds"`
	Ramp                      Phase   `json:"ramp"`
	// Gap says what did not finish in time (not all Healthy within -healthy-timeout).
	Gap    string  `json:"gap,omitempty"`
	Steady *Steady `json:"steady,omitempty"`

	ControllerRSSPeakMiB float64 `json:"controllerRSSPeakMiB"`
	ProxyRSSPeakMiB      float64 `json:"proxyRSSPeakMiB"`
	ProxyRSSEndMiB       float64 `json:"proxyRSSEndMiB"`
	QueueDepthPeak       float64 `json:"queueDepthPeak"`

	PropagationQuiet *Prop `json:"propagationQuiet,omitempty"`
	PropagationChurn *Prop `json:"propagationChurn,omitempty"`

	APIServerProfile string `json:"apiserverProfile,omitempty"`

	Samples []Point `json:"samples,omitempty"`
}

// Phase is what the control plane did between two scrapes.
type Phase struct {
	Seconds                   float64            `json:"seconds"`
	APIServerReqPerSec        float64            `json:"apiserverReqPerSec"`
	APIServerSlugwayReqPerSec float64            `json:"apiserverSlugwayReqPerSec"`
	APIServerByVerb           map[string]float64 `json:"apiserverByVerb"`
	ControllerClientReqPerSec float64            `json:"controllerClientReqPerSec"`
	ControllerClientByMethod  map[string]float64 `json:"controllerClientByMethod"`
	ReconcilesPerSec          float64            `json:"reconcilesPerSec"`
	QueueWait                 Latency            `json:"queueWait"`
	Work                      Latency            `json:"work"`
	Reconcile                 Latency            `json:"reconcile"`
	QueueDepthEnd             float64            `json:"queueDepthEnd"`
	CPUCores                  map[string]float64 `json:"cpuCores"`
}

// Steady is the Steady-state window after all instances are Healthy.
type Steady struct {
	Phase
	InstanceWritesPerMin       float64 `json:"instanceWritesPerMin"`
	ServiceAccountWritesPerMin float64 `json:"serviceAccountWritesPerMin"`
	WritesPerInstancePer30s    float64 `json:"writesPerInstancePer30s"`
	ProbesPerSecond            float64 `json:"probesPerSecond"`
	ControllerRSSMiB           float64 `json:"controllerRSSMiB"`
	ProxyRSSMiB                float64 `json:"proxyRSSMiB"`
	StillHealthy               int     `json:"stillHealthy"`
}

// Latency summarizes a histogram, in seconds (-1: no observations).
type Latency struct {
	N    float64 `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
}

// Prop is one route propagation measurement, in seconds.
type Prop struct {
	N        int     `json:"n"`
	Missed   int     `json:"missed"`
	P50      float64 `json:"p50"`
	P90      float64 `json:"p90"`
	P99      float64 `json:"p99"`
	Max      float64 `json:"max"`
	WriteP50 float64 `json:"writeP50"`
	WriteP99 float64 `json:"writeP99"`

	ChurnWritesPerSec       float64            `json:"churnWritesPerSec,omitempty"`
	ChurnErrors             int64              `json:"churnErrors,omitempty"`
	ProxyRebuildsPerSec     float64            `json:"proxyRebuildsPerSec,omitempty"`
	ProxyCPUCores           float64            `json:"proxyCPUCores,omitempty"`
	ProxyPropagationSeconds float64            `json:"proxyPropagationP99Seconds,omitempty"`
	CPUCores                map[string]float64 `json:"cpuCores,omitempty"`
	Profile                 string             `json:"profile,omitempty"`
}

func (p *Prop) String() string {
	return fmt.Sprintf("n=%d missed=%d p50=%s p90=%s p99=%s max=%s (status write p50=%s)",
		p.N, p.Missed, Ms(p.P50), Ms(p.P90), Ms(p.P99), Ms(p.Max), Ms(p.WriteP50))
}

// Point is one sample of the run's timeline.
type Point struct {
	T             float64 `json:"t"`
	Healthy       int     `json:"healthy"`
	QueueDepth    float64 `json:"queueDepth"`
	ControllerRSS float64 `json:"controllerRSS"`
	ProxyRSS      float64 `json:"proxyRSS"`
}

func Ms(s float64) string {
	if s < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", s*1000)
}

func Num(f float64, digits int) string {
	if f < 0 {
		return "–"
	}
	return fmt.Sprintf("%.*f", digits, f)
}

// Markdown renders the run as the rows docs/benchmarks.md shows.
func (r *Result) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n<!-- %s on %s; %s -->\n", r.Date, r.Machine, r.Command)
	fmt.Fprintf(&b, "| instances | slugs | refresh | time to Healthy | creates/s | instance writes/min | per instance per 30 s | SA writes/min | probes/s | apiserver req/s (slugway.io) | controller RSS Steady/peak | proxy RSS Steady/peak | queue depth peak | queue wait p99 (ramp / Steady) | reconcile p99 (Steady) |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	s := r.Steady
	if s == nil {
		s = &Steady{}
	}
	tth := r.TimeToHealthy()
	fmt.Fprintf(&b, "| %d | %d | %s | %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.1f (%.1f) | %.0f / %.0f MiB | %.0f / %.0f MiB | %.0f | %s / %s | %s |\n",
		r.Instances, r.Slugs, r.HeartbeatRefresh, tth, r.CreatesPerSecond,
		s.InstanceWritesPerMin, s.WritesPerInstancePer30s, s.ServiceAccountWritesPerMin, s.ProbesPerSecond,
		s.APIServerReqPerSec, s.APIServerSlugwayReqPerSec,
		s.ControllerRSSMiB, r.ControllerRSSPeakMiB, s.ProxyRSSMiB, r.ProxyRSSPeakMiB,
		r.QueueDepthPeak, Ms(r.Ramp.QueueWait.P99), Ms(s.QueueWait.P99), Ms(s.Reconcile.P99))
	if r.PropagationQuiet != nil {
		fmt.Fprintf(&b, "\nroute propagation, quiet: %s\n", r.PropagationQuiet)
	}
	if p := r.PropagationChurn; p != nil {
		fmt.Fprintf(&b, "route propagation, %.0f heartbeat writes/s: %s; proxy %.1f rebuilds/s, %.2f cores\n", p.ChurnWritesPerSec, p, p.ProxyRebuildsPerSec, p.ProxyCPUCores)
	}
	if s.CPUCores != nil {
		fmt.Fprintf(&b, "Steady-state CPU (cores): %v\n", s.CPUCores)
	}
	return b.String()
}

// TimeToHealthy is "12.3 s", or "> 300 s (6000 Healthy)" when not all became Healthy in time.
func (r *Result) TimeToHealthy() string {
	if r.Healthy < r.Instances {
		return fmt.Sprintf("> %.0f s (%d Healthy)", r.TimeToHealthySeconds, r.Healthy)
	}
	return fmt.Sprintf("%.1f s", r.TimeToHealthySeconds)
}
