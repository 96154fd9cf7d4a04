package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metrics is a scrape: every metric family of an endpoint at one moment, as
// expfmt parses the Prometheus text format (what /metrics serves without content
// negotiation), keyed by family name.
type metrics map[string]*dto.MetricFamily

func parseMetrics(r io.Reader) (metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// each calls fn for every sample of family name whose labels include match.
func (m metrics) each(name string, match map[string]string, fn func(*dto.Metric)) {
	f := m[name]
	if f == nil {
		return
	}
	for _, s := range f.GetMetric() {
		if hasLabels(s, match) {
			fn(s)
		}
	}
}

func hasLabels(s *dto.Metric, match map[string]string) bool {
	found := 0
	for _, l := range s.GetLabel() {
		if v, ok := match[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(match)
}

func label(s *dto.Metric, name string) string {
	for _, l := range s.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value is a counter's, gauge's or untyped sample's value.
func value(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	default:
		return s.GetUntyped().GetValue()
	}
}

// sum adds the samples named name whose labels include match.
func (m metrics) sum(name string, match map[string]string) float64 {
	t := 0.0
	m.each(name, match, func(s *dto.Metric) { t += value(s) })
	return t
}

// sumBy adds the samples named name whose labels include match, grouped by the
// values of the labels by (joined with " ").
func (m metrics) sumBy(name string, match map[string]string, by ...string) map[string]float64 {
	out := map[string]float64{}
	m.each(name, match, func(s *dto.Metric) {
		parts := make([]string, len(by))
		for i, l := range by {
			parts[i] = label(s, l)
		}
		out[strings.Join(parts, " ")] += value(s)
	})
	return out
}

// bucket is a cumulative histogram bucket: Count observations were ≤ LE.
type bucket struct {
	LE    float64
	Count float64
}

// histogram is the part of a histogram between two scrapes.
type histogram struct {
	Buckets []bucket
	Sum     float64
	Count   float64
}

// histDelta returns the observations of histogram name (labels including match)
// made between the scrapes before and after. A nil before means since the start.
func histDelta(before, after metrics, name string, match map[string]string) histogram {
	var h histogram
	collect := func(m metrics, sign float64) map[float64]float64 {
		out := map[float64]float64{}
		m.each(name, match, func(s *dto.Metric) {
			for _, b := range s.GetHistogram().GetBucket() {
				out[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
			h.Sum += sign * s.GetHistogram().GetSampleSum()
			h.Count += sign * float64(s.GetHistogram().GetSampleCount())
		})
		return out
	}
	b, a := collect(before, -1), collect(after, 1)
	for le, c := range a {
		h.Buckets = append(h.Buckets, bucket{LE: le, Count: c - b[le]})
	}
	sort.Slice(h.Buckets, func(i, j int) bool { return h.Buckets[i].LE < h.Buckets[j].LE })
	return h
}

// quantile estimates the q-quantile by linear interpolation inside the bucket that
// holds it, as PromQL's histogram_quantile does. It returns NaN without observations,
// and the largest finite bound when the quantile falls in the +Inf bucket.
func (h histogram) quantile(q float64) float64 {
	if len(h.Buckets) == 0 {
		return math.NaN()
	}
	total := h.Buckets[len(h.Buckets)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	prevLE, prevCount := 0.0, 0.0
	for _, b := range h.Buckets {
		if b.Count >= rank {
			if math.IsInf(b.LE, 1) {
				return prevLE
			}
			if b.Count == prevCount {
				return b.LE
			}
			return prevLE + (b.LE-prevLE)*(rank-prevCount)/(b.Count-prevCount)
		}
		prevLE, prevCount = b.LE, b.Count
	}
	return prevLE
}

// mean is Sum/Count, or NaN without observations.
func (h histogram) mean() float64 {
	if h.Count <= 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}

func (h histogram) String() string {
	return fmt.Sprintf("n=%.0f mean=%.4gs p50=%.4gs p99=%.4gs", h.Count, h.mean(), h.quantile(.5), h.quantile(.99))
}
