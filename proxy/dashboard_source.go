package proxy

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy/dashboard"
	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/registry"
)

// dashboardSource is the dashboard's view of a proxy (dashboard.Source): slugs and
// instances from the watcher's informer cache, routing state (endpoints, requests
// in flight, ejections) from the handler's live table. It reads only memory.
type dashboardSource struct {
	p *Proxy

	swappedAt atomic.Int64 // unix nanoseconds of the last table swap
	lastProp  atomic.Int64 // nanoseconds: the last propagation delay observed
	propCount uint64       // the propagation histogram at the last swap; only onSwap touches these
	propSum   float64
}

// newDashboardSource returns nil when o.Dashboard is off. Otherwise it hooks
// o.OnTableSwap (keeping the caller's hook) to note when each table starts serving.
func newDashboardSource(p *Proxy, o *Options) *dashboardSource {
	if !o.Dashboard {
		return nil
	}
	d := &dashboardSource{p: p}
	next := o.OnTableSwap
	o.OnTableSwap = func(t *routes.Table) {
		d.onSwap()
		if next != nil {
			next(t)
		}
	}
	return d
}

// onSwap runs on the watcher's update goroutine right after the handler took a
// new table and the watcher observed its propagation delay: the histogram's new
// observation is that delay.
func (d *dashboardSource) onSwap() {
	d.swappedAt.Store(time.Now().UnixNano())
	var m dto.Metric
	if err := d.p.handler.metrics.propagation.Write(&m); err != nil || m.Histogram == nil {
		return
	}
	n, sum := m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()
	if n > d.propCount {
		d.lastProp.Store(int64((sum - d.propSum) / float64(n-d.propCount) * 1e9))
	}
	d.propCount, d.propSum = n, sum
}

// mount serves the dashboard at /dashboard/ on the admin mux (nothing when it is off).
func (d *dashboardSource) mount(mux *http.ServeMux) {
	if d == nil {
		return
	}
	mux.Handle("/dashboard/", dashboard.Handler("/dashboard/", d, d.p.handler.stats))
}

func (d *dashboardSource) Table() dashboard.Table {
	t := dashboard.Table{Slugs: len(d.p.handler.table.Load().routes), LastPropagation: time.Duration(d.lastProp.Load())}
	if at := d.swappedAt.Load(); at != 0 {
		t.SwappedAt = time.Unix(0, at)
	}
	var m dto.Metric
	if d.p.handler.metrics.builds.Write(&m) == nil && m.Counter != nil {
		t.Builds = uint64(m.Counter.GetValue())
	}
	return t
}

func (d *dashboardSource) Slugs() []dashboard.Slug {
	var sas slugwayv1.ServiceAccountList
	if err := d.p.watcher.reader.List(context.Background(), &sas); err != nil {
		return nil
	}
	live := d.p.handler.table.Load()
	out := make([]dashboard.Slug, 0, len(sas.Items))
	for i := range sas.Items {
		out = append(out, slugOf(&sas.Items[i], live.from.Lookup(sas.Items[i].Name)))
	}
	return out
}

func slugOf(sa *slugwayv1.ServiceAccount, r *routes.Route) dashboard.Slug {
	s := dashboard.Slug{
		Name: sa.Name, DisplayName: sa.Spec.DisplayName, Owner: sa.Spec.Owner,
		Ready: string(metav1.ConditionUnknown), Total: int(sa.Status.Instances),
		Deleting: !sa.DeletionTimestamp.IsZero(),
	}
	if c := apimeta.FindStatusCondition(sa.Status.Conditions, slugwayv1.ConditionReady); c != nil {
		s.Ready, s.ReadyReason = string(c.Status), c.Reason
	}
	if r != nil {
		s.Routable, s.Degraded = len(r.Endpoints), r.Degraded
	}
	return s
}

func (d *dashboardSource) Slug(name string) (dashboard.Slug, []dashboard.Instance, bool) {
	ctx := context.Background()
	var sa slugwayv1.ServiceAccount
	if err := d.p.watcher.reader.Get(ctx, client.ObjectKey{Name: name}, &sa); err != nil {
		return dashboard.Slug{}, nil, false
	}
	var insts slugwayv1.InstanceList
	if err := d.p.watcher.reader.List(ctx, &insts, client.MatchingFields{registry.IndexSlug: name}); err != nil {
		return dashboard.Slug{}, nil, false
	}
	live := d.p.handler.table.Load()
	r := live.from.Lookup(name)
	s := slugOf(&sa, r)
	// The live state of a routed instance is its backend, found by endpoint ID.
	routed := map[string]*backend{}
	if lr := live.routes[name]; lr != nil && r != nil {
		byID := make(map[string]*backend, len(lr.backends))
		for _, b := range lr.backends {
			byID[b.ep.ID()] = b
		}
		for _, ep := range r.Endpoints {
			routed[ep.Key] = byID[ep.ID()]
		}
	}
	now := time.Now()
	out := make([]dashboard.Instance, 0, len(insts.Items))
	for i := range insts.Items {
		in := &insts.Items[i]
		di := dashboard.Instance{Namespace: in.Namespace, Name: in.Name, URL: in.Spec.URL, Status: string(in.Status.Status)}
		if hb := in.Status.LastHeartbeat; hb != nil {
			t := hb.Time
			di.LastHeartbeat = &t
		}
		if c := apimeta.FindStatusCondition(in.Status.Conditions, slugwayv1.ConditionReady); c != nil && c.Status != metav1.ConditionTrue {
			di.Reason = c.Reason
		}
		if b, ok := routed[in.Namespace+"/"+in.Name]; ok {
			di.Routed = true
			if b != nil {
				di.InFlight = b.inflight.Load()
				if b.ejected(now.UnixNano()) {
					t := time.Unix(0, b.ejectedUntil.Load())
					di.EjectedUntil = &t
				}
			}
		}
		out = append(out, di)
	}
	return s, out, true
}
