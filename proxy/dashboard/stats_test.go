package dashboard

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time source for the Recorder.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration)     { c.ns.Add(int64(d)) }
func newClock(t time.Time) *clock        { c := &clock{}; c.set(t); return c }
func recorderAt(c *clock) *Recorder      { r := NewRecorder(); r.now = c.now; return r }
func approx(got, want, tol float64) bool { return math.Abs(got-want) <= tol*want }

func TestBucketsCoverEveryDuration(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 16383, 16384, 24575, 24576, 32767, 32768, time.Millisecond,
		time.Second, 1<<35 - 1, 1 << 35, time.Hour, math.MaxInt64} {
		i := bucketOf(d)
		lo, hi := bucketBounds(i)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%v) = %d, out of [0,%d)", d, i, numBuckets)
		}
		if i < numBuckets-1 && (float64(d) < lo || float64(d) >= hi) {
			t.Errorf("%v (%dns) in bucket %d = [%v, %v)", d, int64(d), i, lo, hi)
		}
		if i == numBuckets-1 && float64(d) < lo {
			t.Errorf("%v in the overflow bucket, whose bound is %v", d, lo)
		}
	}
	// Consecutive buckets tile the range with no gap.
	for i := 1; i < numBuckets-1; i++ {
		_, hi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if hi != lo {
			t.Fatalf("bucket %d ends at %v, bucket %d starts at %v", i-1, hi, i, lo)
		}
	}
}

// TestPercentilesWithinBucketError compares the Recorder's p50/p99 with the exact
// percentiles of the same latencies, drawn from a log-normal distribution.
func TestPercentilesWithinBucketError(t *testing.T) {
	c := newClock(time.Unix(1000, 0))
	r := recorderAt(c)
	rng := rand.New(rand.NewPCG(1, 2))
	var all []float64
	for range 30 { // 30 seconds of traffic
		for range 1000 {
			d := time.Duration(math.Exp(rng.NormFloat64()*0.8) * float64(2*time.Millisecond))
			all = append(all, float64(d)/1e6)
			r.Observe("a", 200, d)
		}
		c.add(time.Second)
	}
	slices.Sort(all)
	exact := func(q float64) float64 { return all[int(math.Ceil(q*float64(len(all))))-1] }
	st := r.Stats("a", true)
	if st.Requests != 30000 {
		t.Fatalf("requests %d, want 30000", st.Requests)
	}
	if !approx(st.P50, exact(0.5), 0.25) || !approx(st.P99, exact(0.99), 0.25) {
		t.Errorf("p50 %.3fms (exact %.3f), p99 %.3fms (exact %.3f): more than the 25%% a bucket allows",
			st.P50, exact(0.5), st.P99, exact(0.99))
	}
	if !approx(st.Rate, 30000.0/60, 1e-9) {
		t.Errorf("rate %v, want %v (requests over the 60s window)", st.Rate, 30000.0/60)
	}
}

func TestWindowSlidesAndCountsStatusClasses(t *testing.T) {
	c := newClock(time.Unix(5000, 0))
	r := recorderAt(c)
	r.Observe("a", 200, time.Millisecond)
	r.Observe("a", 404, time.Millisecond)
	r.Observe("a", 503, time.Millisecond)
	r.Observe("a", 502, time.Millisecond)
	if st := r.Stats("a", false); st.Requests != 0 {
		t.Fatalf("the current second is not complete and must not count yet: %+v", st)
	}
	c.add(time.Second)
	st := r.Stats("a", true)
	if st.Requests != 4 || st.Status4xx != 1 || st.Status5xx != 2 {
		t.Fatalf("got %+v, want 4 requests, 1 4xx, 2 5xx", st)
	}
	if len(st.Spark) != 60 || st.Spark[59] != 4 || slices.Max(st.Spark[:59]) != 0 {
		t.Fatalf("sparkline %v: want 60 seconds with the 4 requests in the newest", st.Spark)
	}
	c.add(59 * time.Second) // the second is now the oldest of the window
	if st := r.Stats("a", true); st.Requests != 4 || st.Spark[0] != 4 {
		t.Fatalf("59s later the second is still in the window: %+v", st)
	}
	c.add(time.Second)
	if st := r.Stats("a", true); st.Requests != 0 || st.P50 != 0 {
		t.Fatalf("60s later it left the window: %+v", st)
	}
	// A bucket reused 64 seconds later starts from zero.
	c.set(time.Unix(5000+64, 0))
	r.Observe("a", 200, time.Millisecond)
	c.add(time.Second)
	if st := r.Stats("a", false); st.Requests != 1 || st.Status4xx != 0 || st.Status5xx != 0 {
		t.Fatalf("a reused bucket kept old counts: %+v", st)
	}
}

// TestObserveConcurrentLosesNothing has writers race over second boundaries (the
// bucket resets) while a reader reads; run with -race. Every request lands in its second.
func TestObserveConcurrentLosesNothing(t *testing.T) {
	c := newClock(time.Unix(9000, 0))
	r := recorderAt(c)
	const writers, per = 4, 20000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() { // the reader
		for {
			select {
			case <-stop:
				return
			default:
				r.Stats("s", true)
			}
		}
	}()
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				r.Observe("s", 200+w, time.Duration(i))
				if i%5000 == 4999 && w == 0 {
					c.add(time.Second) // other writers are mid-second: some see the new second first
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	c.add(time.Second)
	if st := r.Stats("s", false); st.Requests != writers*per {
		t.Fatalf("counted %d requests, want %d", st.Requests, writers*per)
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	r := NewRecorder()
	slug := string([]byte("known"))
	r.Observe(slug, 200, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() { r.Observe(slug, 200, time.Millisecond) }); n != 0 {
		t.Fatalf("Observe allocates %v times per request for a known slug", n)
	}
	var nilRec *Recorder
	nilRec.Observe(slug, 200, time.Millisecond) // no dashboard: a no-op
	if st := nilRec.Stats(slug, true); st.Requests != 0 {
		t.Fatal("a nil Recorder has no figures")
	}
}

func TestObserveKeepsItsOwnCopyOfTheSlug(t *testing.T) {
	r := NewRecorder()
	buf := []byte("alpha")
	r.Observe(string(buf[:]), 200, 0) // the front end's strings may point into its read buffer
	copy(buf, "omega")
	if _, ok := (*r.slugs.Load())["alpha"]; !ok {
		t.Fatal("the Recorder's key changed with the caller's buffer")
	}
}

func TestRetainForgetsSlugsThatLeft(t *testing.T) {
	r := NewRecorder()
	r.Observe("stay", 200, 0)
	r.Observe("gone", 200, 0)
	r.Retain(func(s string) bool { return s == "stay" })
	m := *r.slugs.Load()
	if _, ok := m["gone"]; ok || m["stay"] == nil {
		t.Fatalf("after Retain: %v", m)
	}
}

func BenchmarkObserve(b *testing.B) {
	r := NewRecorder()
	for i := range 1000 {
		r.Observe(string(rune('a'+i%26))+string(rune(i)), 200, 0)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Observe("a\x00", 200, 3*time.Millisecond)
		}
	})
}

func BenchmarkObserveOneCore(b *testing.B) {
	r := NewRecorder()
	r.Observe("a", 200, 0)
	for b.Loop() {
		r.Observe("a", 200, 3*time.Millisecond)
	}
}
