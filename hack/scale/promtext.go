package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// sample is one line of the Prometheus text exposition format.
type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// metrics is a scrape: every sample of an endpoint at one moment.
type metrics []sample

// parseMetrics reads the Prometheus text format (what /metrics serves without
// content negotiation). Comments and malformed lines are skipped.
func parseMetrics(r io.Reader) (metrics, error) {
	var out metrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, ok := parseLine(line)
		if ok {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

func parseLine(line string) (sample, bool) {
	s := sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, false
	}
	s.Name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if rest == "" {
				return s, false
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
				return s, false
			}
			key := strings.TrimSpace(rest[:eq])
			rest = rest[eq+2:]
			var val strings.Builder
			closed := false
			for j := 0; j < len(rest); j++ {
				c := rest[j]
				if c == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[j])
					}
					continue
				}
				if c == '"' {
					rest = rest[j+1:]
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return s, false
			}
			s.Labels[key] = val.String()
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, false
	}
	s.Value = v
	return s, true
}

func matches(s sample, name string, match map[string]string) bool {
	if s.Name != name {
		return false
	}
	for k, v := range match {
		if s.Labels[k] != v {
			return false
		}
	}
	return true
}

// sum adds the samples named name whose labels include match.
func (m metrics) sum(name string, match map[string]string) float64 {
	t := 0.0
	for _, s := range m {
		if matches(s, name, match) {
			t += s.Value
		}
	}
	return t
}

// sumBy adds the samples named name whose labels include match, grouped by the
// values of the labels by (joined with " ").
func (m metrics) sumBy(name string, match map[string]string, by ...string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if !matches(s, name, match) {
			continue
		}
		parts := make([]string, len(by))
		for i, l := range by {
			parts[i] = s.Labels[l]
		}
		out[strings.Join(parts, " ")] += s.Value
	}
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
	collect := func(m metrics) map[float64]float64 {
		out := map[float64]float64{}
		for _, s := range m {
			if !matches(s, name+"_bucket", match) {
				continue
			}
			le, err := strconv.ParseFloat(s.Labels["le"], 64)
			if err != nil {
				continue
			}
			out[le] += s.Value
		}
		return out
	}
	b, a := collect(before), collect(after)
	var h histogram
	for le, c := range a {
		h.Buckets = append(h.Buckets, bucket{LE: le, Count: c - b[le]})
	}
	sort.Slice(h.Buckets, func(i, j int) bool { return h.Buckets[i].LE < h.Buckets[j].LE })
	h.Sum = after.sum(name+"_sum", match) - before.sum(name+"_sum", match)
	h.Count = after.sum(name+"_count", match) - before.sum(name+"_count", match)
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
