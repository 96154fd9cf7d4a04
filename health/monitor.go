package health

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Spec is how one instance is probed.
type Spec struct {
	Target     Target
	Interval   time.Duration
	Thresholds Thresholds
	// Groups name who the instance belongs to, for example its slug and its owner
	// ("" for none). The probes of one group hold at most GroupShare of the workers.
	Groups Groups
}

// Groups are the fairness groups of an instance. An empty name is no group.
type Groups [2]string

// DefaultGroupShare is the share of the probe workers one group may hold when
// Monitor.GroupShare is zero: a quarter, 16 of the default 64.
const DefaultGroupShare = 0.25

// State is what the Monitor knows of one instance.
type State struct {
	Health Health
	// LastSuccess is the time of the last successful probe (zero if none yet).
	LastSuccess time.Time
	// Last is the most recent probe result.
	Last Result
	// Probes counts probes run since the spec was last set.
	Probes int
}

// Monitor probes many instances, each on its own jittered schedule, with at most
// Concurrency probes in flight. It calls Notify(key) after an instance's first probe
// and whenever its health changes, and Refreshed(key, lastSuccess) when a success is
// Refresh newer than the last one it reported, so that the controller can write a
// coarse heartbeat without writing per probe. With Refreshed nil, Notify gets both.
//
// MaxRefreshRate, when positive, bounds the refreshes per second across all
// instances: the refresh interval stretches to instances ÷ MaxRefreshRate once
// that exceeds Refresh (a write budget: 10,000 instances at 50/s refresh every 200s).
//
// The Monitor is fair: the probes in flight of one group (Spec.Groups: a slug, an
// owner) never hold more than GroupShare of the workers. A due probe whose group is
// at its share waits, parked, for one of the group's probes to end, and probes of
// other groups go ahead of it; so instances that are slow or tarpitted (every probe
// holds its worker for the whole timeout) delay only their own group.
type Monitor[K comparable] struct {
	Prober         *Prober
	Concurrency    int
	Refresh        time.Duration
	MaxRefreshRate float64
	// GroupShare is the share of Concurrency one group's probes may hold (at least one
	// worker); zero means DefaultGroupShare.
	GroupShare float64
	Notify     func(K)
	Refreshed  func(K, time.Time)

	mu       sync.Mutex
	items    map[K]*item[K]
	queue    schedule[K]
	inflight map[string]int        // probes running, by group
	parked   map[string][]*item[K] // due probes waiting for their group's share, by group
	wake     chan struct{}
	now      func() time.Time
}

type item[K comparable] struct {
	key      K
	spec     Spec
	tracker  Tracker
	state    State
	notified time.Time // LastSuccess at the last Notify
	due      time.Time
	index    int    // position in the heap, -1 when not queued
	running  bool   // a probe is in flight
	parked   string // the group it waits for, "" when not parked
	groups   Groups // the groups its running probe counts against
	gen      int    // bumped on every spec change, so a stale result is dropped
}

// NewMonitor returns a Monitor. Call Start to run it.
func NewMonitor[K comparable](p *Prober, concurrency int, refresh time.Duration, notify func(K)) *Monitor[K] {
	if concurrency < 1 {
		concurrency = 1
	}
	return &Monitor[K]{
		Prober: p, Concurrency: concurrency, Refresh: refresh, Notify: notify,
		items: map[K]*item[K]{}, inflight: map[string]int{}, parked: map[string][]*item[K]{},
		wake: make(chan struct{}, 1), now: time.Now,
	}
}

// Ensure starts probing key with spec, or updates its spec. An unchanged spec is a no-op,
// so it is safe to call on every reconcile. A changed target (URL, address, timeout)
// restarts from Unknown: what was known is about another endpoint. A change of only
// the interval, thresholds or groups keeps the health and applies from the next probe.
func (m *Monitor[K]) Ensure(key K, spec Spec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[key]
	if ok && it.spec == spec {
		return
	}
	if ok && it.spec.Target == spec.Target {
		shorter := spec.Interval < it.spec.Interval
		it.spec = spec
		if next := m.now().Add(jitter(spec.Interval)); shorter && it.index >= 0 && it.due.After(next) {
			m.schedule(it, next)
		}
		return
	}
	if !ok {
		it = &item[K]{key: key, index: -1}
		m.items[key] = it
	}
	it.spec = spec
	it.gen++
	it.tracker = Tracker{}
	it.state = State{Health: Unknown, LastSuccess: it.state.LastSuccess}
	// First probe at once, so that a new instance is routable within a second; spread over
	// up to 100ms so that a burst (a controller starting with 10,000 instances) does not
	// probe in lockstep. The worker pool bounds concurrency either way.
	m.schedule(it, m.now().Add(spread(min(spec.Interval, 100*time.Millisecond))))
}

// RefreshInterval is the current refresh interval: Refresh, stretched by
// MaxRefreshRate when there are many instances.
func (m *Monitor[K]) RefreshInterval() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refreshLocked()
}

func (m *Monitor[K]) refreshLocked() time.Duration {
	r := m.Refresh
	if m.MaxRefreshRate > 0 {
		if d := time.Duration(float64(len(m.items)) / m.MaxRefreshRate * float64(time.Second)); d > r {
			r = d
		}
	}
	return r
}

// Forget stops probing key.
func (m *Monitor[K]) Forget(key K) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[key]
	if !ok {
		return
	}
	if it.index >= 0 {
		heap.Remove(&m.queue, it.index)
	}
	m.unpark(it)
	delete(m.items, key)
}

// groupCap is how many probes one group may have in flight. The caller holds m.mu.
func (m *Monitor[K]) groupCap() int {
	share := m.GroupShare
	if share <= 0 {
		share = DefaultGroupShare
	}
	return max(1, int(float64(m.Concurrency)*share))
}

// fullGroup returns the first of it's groups that is at its share, or "". The caller holds m.mu.
func (m *Monitor[K]) fullGroup(it *item[K]) string {
	limit := m.groupCap()
	for _, g := range it.spec.Groups {
		if g != "" && m.inflight[g] >= limit {
			return g
		}
	}
	return ""
}

// unpark takes it out of its group's waiting list. The caller holds m.mu.
func (m *Monitor[K]) unpark(it *item[K]) {
	if it.parked == "" {
		return
	}
	list := m.parked[it.parked]
	for i, x := range list {
		if x == it {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(m.parked, it.parked)
	} else {
		m.parked[it.parked] = list
	}
	it.parked = ""
}

// release ends it's probe's hold on its groups' shares, and puts the oldest probe
// parked on each of them back in the queue (still due, so it runs next if its other
// group lets it). The caller holds m.mu.
func (m *Monitor[K]) release(it *item[K]) {
	for _, g := range it.groups {
		if g == "" {
			continue
		}
		if m.inflight[g]--; m.inflight[g] <= 0 {
			delete(m.inflight, g)
		}
		if list := m.parked[g]; len(list) > 0 {
			next := list[0]
			m.unpark(next)
			heap.Push(&m.queue, next)
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}
	}
	it.groups = Groups{}
}

// State returns what the Monitor knows of key.
func (m *Monitor[K]) State(key K) (State, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[key]
	if !ok {
		return State{}, false
	}
	return it.state, true
}

// Len returns how many instances are being probed.
func (m *Monitor[K]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// Start runs the scheduler and the probe workers until ctx ends. It implements manager.Runnable.
func (m *Monitor[K]) Start(ctx context.Context) error {
	jobs := make(chan *item[K])
	var wg sync.WaitGroup
	for range m.Concurrency {
		wg.Go(func() {
			for it := range jobs {
				m.run(ctx, it)
			}
		})
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m.mu.Lock()
		var next *item[K]
		wait := time.Hour
		for next == nil && len(m.queue) > 0 {
			wait = m.queue[0].due.Sub(m.now())
			if wait > 0 {
				break
			}
			it := heap.Pop(&m.queue).(*item[K])
			if g := m.fullGroup(it); g != "" {
				it.parked = g // its group holds its share: wait for one of the group's probes to end
				m.parked[g] = append(m.parked[g], it)
				continue
			}
			it.running = true
			it.groups = it.spec.Groups
			for _, g := range it.groups {
				if g != "" {
					m.inflight[g]++
				}
			}
			next = it
		}
		if next == nil && len(m.queue) == 0 {
			wait = time.Hour
		}
		m.mu.Unlock()
		if next != nil {
			select {
			case jobs <- next:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-timer.C:
		}
	}
}

func (m *Monitor[K]) run(ctx context.Context, it *item[K]) {
	m.mu.Lock()
	spec, gen := it.spec, it.gen
	m.mu.Unlock()

	r := m.Prober.Probe(ctx, spec.Target)
	if ctx.Err() != nil {
		return
	}

	m.mu.Lock()
	it.running = false
	m.release(it)
	if m.items[it.key] != it {
		m.mu.Unlock() // forgotten while probing
		return
	}
	if gen != it.gen {
		// The spec changed while probing: drop the stale result and run the new spec when Ensure asked.
		m.schedule(it, it.due)
		m.mu.Unlock()
		return
	}
	now := m.now()
	changed := it.tracker.Observe(r, spec.Thresholds)
	it.state.Health = it.tracker.Health()
	it.state.Last = r
	it.state.Probes++
	if r.OK {
		it.state.LastSuccess = now
	}
	notify := changed || it.state.Probes == 1
	refresh := !notify && r.OK && m.Refresh > 0 && now.Sub(it.notified) >= m.refreshLocked()
	if notify || refresh {
		it.notified = it.state.LastSuccess
	}
	m.schedule(it, now.Add(jitter(spec.Interval)))
	key, last := it.key, it.state.LastSuccess
	m.mu.Unlock()

	switch {
	case refresh && m.Refreshed != nil:
		m.Refreshed(key, last)
	case (notify || refresh) && m.Notify != nil:
		m.Notify(key)
	}
}

// schedule queues it at due. The caller holds m.mu.
func (m *Monitor[K]) schedule(it *item[K], due time.Time) {
	it.due = due
	m.unpark(it) // a new due time (a new spec) is queued afresh
	switch {
	case it.index >= 0:
		heap.Fix(&m.queue, it.index)
	case !it.running:
		heap.Push(&m.queue, it)
	default:
		// A probe is in flight; run() reschedules when it returns.
		return
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// jitter returns d spread by ±10%, so that instances created together do not probe together.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	spread := int64(d) / 5
	if spread <= 0 {
		return d
	}
	return time.Duration(int64(d) - spread/2 + rand.Int64N(spread))
}

// spread returns a uniformly random duration in [0, d).
func spread(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// schedule is a min-heap of items by due time.
type schedule[K comparable] []*item[K]

func (s schedule[K]) Len() int           { return len(s) }
func (s schedule[K]) Less(i, j int) bool { return s[i].due.Before(s[j].due) }
func (s schedule[K]) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index = i
	s[j].index = j
}
func (s *schedule[K]) Push(x any) {
	it := x.(*item[K])
	it.index = len(*s)
	*s = append(*s, it)
}
func (s *schedule[K]) Pop() any {
	old := *s
	it := old[len(old)-1]
	old[len(old)-1] = nil
	it.index = -1
	*s = old[:len(old)-1]
	return it
}
