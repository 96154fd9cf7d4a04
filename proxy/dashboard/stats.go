package dashboard

import (
	"math"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Window is how far back the dashboard's rates and latencies look: the last 60
// complete seconds.
const Window = 60 * time.Second

const (
	windowSecs = int64(Window / time.Second)
	ringSize   = 64 // > windowSecs, so the second being written never overwrites one being read

	// Latency buckets: below 2^minExp ns (16µs) one bucket, then two per power of
	// two (bounds 2^e and 1.5·2^e) up to 2^maxExp ns (34s), then one for the rest.
	// A percentile is interpolated inside its bucket: it is within ±25% of the truth.
	minExp     = 14
	maxExp     = 35
	numBuckets = 1 + 2*(maxExp-minExp) + 1
)

// Recorder keeps per-slug request counts and latencies, per second, for the last
// minute. Observe is the one call the proxy makes per answered request; it takes no
// lock and allocates nothing once a slug has been seen. A nil *Recorder records
// nothing, so a proxy without the dashboard pays one nil check.
type Recorder struct {
	slugs atomic.Pointer[map[string]*slugStats] // copy on write: read on every request

	mu  sync.Mutex // serializes writers of slugs
	now func() time.Time
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	r := &Recorder{now: time.Now}
	m := map[string]*slugStats{}
	r.slugs.Store(&m)
	return r
}

// slugStats is one slug's ring of per-second buckets, indexed by unix second mod ringSize.
type slugStats struct {
	ring [ringSize]second
	mu   sync.Mutex // serializes resetting a bucket for a new second
}

type second struct {
	unix      atomic.Int64 // the second the counts below belong to
	n, n4, n5 atomic.Uint32
	lat       [numBuckets]atomic.Uint32
}

// Observe records one answered request for slug: its status code and how long it took.
func (r *Recorder) Observe(slug string, code int, d time.Duration) {
	if r == nil {
		return
	}
	s := (*r.slugs.Load())[slug]
	if s == nil {
		s = r.add(slug)
	}
	sec := r.now().Unix()
	b := &s.ring[sec&(ringSize-1)]
	if b.unix.Load() != sec {
		s.reset(b, sec)
	}
	b.n.Add(1)
	switch {
	case code >= 500:
		b.n5.Add(1)
	case code >= 400:
		b.n4.Add(1)
	}
	b.lat[bucketOf(d)].Add(1)
}

// reset makes b the bucket of sec. Counts are zeroed before the new second is
// published, so an increment by anyone who saw the new second is never lost.
func (s *slugStats) reset(b *second, sec int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.unix.Load() >= sec {
		return // someone else already did (or the clock stepped back: count it in the newer second)
	}
	b.n.Store(0)
	b.n4.Store(0)
	b.n5.Store(0)
	for i := range b.lat {
		b.lat[i].Store(0)
	}
	b.unix.Store(sec)
}

func (r *Recorder) add(slug string) *slugStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.slugs.Load()
	if s := old[slug]; s != nil {
		return s
	}
	m := make(map[string]*slugStats, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	s := &slugStats{}
	m[strings.Clone(slug)] = s // the caller's string may point into a read buffer
	r.slugs.Store(&m)
	return s
}

// Retain forgets the slugs for which keep returns false (slugs that left the route table).
func (r *Recorder) Retain(keep func(slug string) bool) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.slugs.Load()
	var m map[string]*slugStats
	for k := range old {
		if !keep(k) {
			if m == nil {
				m = make(map[string]*slugStats, len(old))
				for k, v := range old {
					m[k] = v
				}
			}
			delete(m, k)
		}
	}
	if m != nil {
		r.slugs.Store(&m)
	}
}

// bucketOf is the latency bucket of d.
func bucketOf(d time.Duration) int {
	if d < 1<<minExp {
		return 0
	}
	e := bits.Len64(uint64(d)) - 1 // 2^e <= d < 2^(e+1)
	if e >= maxExp {
		return numBuckets - 1
	}
	half := int(uint64(d)>>(e-1)) & 1 // d >= 1.5·2^e
	return 1 + 2*(e-minExp) + half
}

// bucketBounds returns the range [lo, hi) of bucket i, in nanoseconds.
func bucketBounds(i int) (lo, hi float64) {
	switch {
	case i == 0:
		return 0, 1 << minExp
	case i == numBuckets-1:
		return 1 << maxExp, 1 << maxExp
	}
	e, half := minExp+(i-1)/2, (i-1)%2
	lo = math.Ldexp(1+0.5*float64(half), e)
	hi = math.Ldexp(1.5+0.5*float64(half), e)
	return lo, hi
}

// Stats are one slug's figures over the last minute (Window, complete seconds only).
type Stats struct {
	// Requests, Status4xx and Status5xx are counts over the window; the rates are per second.
	Requests  uint64  `json:"requests"`
	Status4xx uint64  `json:"status4xx"`
	Status5xx uint64  `json:"status5xx"`
	Rate      float64 `json:"rate"`
	Rate4xx   float64 `json:"rate4xx"`
	Rate5xx   float64 `json:"rate5xx"`
	// P50 and P99 are latencies in milliseconds (0 without requests).
	P50 float64 `json:"p50ms"`
	P99 float64 `json:"p99ms"`
	// Spark is requests per second, oldest first, one entry per second of the window
	// (only when asked for).
	Spark []uint32 `json:"spark,omitempty"`
}

// Stats returns slug's figures for the minute before the current second. With
// detail false it skips the latencies and the sparkline (cheaper, for sorting).
func (r *Recorder) Stats(slug string, detail bool) Stats {
	var st Stats
	if r == nil {
		return st
	}
	s := (*r.slugs.Load())[slug]
	if s == nil {
		if detail {
			st.Spark = make([]uint32, windowSecs)
		}
		return st
	}
	now := r.now().Unix()
	var lat [numBuckets]uint64
	if detail {
		st.Spark = make([]uint32, windowSecs)
	}
	for i := range windowSecs {
		sec := now - windowSecs + i
		b := &s.ring[sec&(ringSize-1)]
		if b.unix.Load() != sec {
			continue
		}
		n := b.n.Load()
		st.Requests += uint64(n)
		st.Status4xx += uint64(b.n4.Load())
		st.Status5xx += uint64(b.n5.Load())
		if detail {
			st.Spark[i] = n
			for j := range lat {
				lat[j] += uint64(b.lat[j].Load())
			}
		}
	}
	w := float64(windowSecs)
	st.Rate, st.Rate4xx, st.Rate5xx = float64(st.Requests)/w, float64(st.Status4xx)/w, float64(st.Status5xx)/w
	if detail {
		st.P50, st.P99 = quantile(&lat, 0.50), quantile(&lat, 0.99)
	}
	return st
}

// quantile estimates the q-quantile of the latencies counted in lat, in
// milliseconds, interpolating linearly inside the bucket that holds it.
func quantile(lat *[numBuckets]uint64, q float64) float64 {
	var total uint64
	for _, c := range lat {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total) // the rank-th smallest, 1-based, rounded up
	var seen uint64
	for i, c := range lat {
		if c == 0 {
			continue
		}
		if float64(seen+c) >= rank {
			lo, hi := bucketBounds(i)
			frac := (rank - float64(seen)) / float64(c)
			return (lo + (hi-lo)*frac) / 1e6
		}
		seen += c
	}
	lo, _ := bucketBounds(numBuckets - 1)
	return lo / 1e6
}
