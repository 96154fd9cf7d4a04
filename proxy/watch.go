package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/registry"
)

// watcher feeds the handler: informers on Instances and ServiceAccounts report
// every change, the event handlers note which slugs it touched (from the old and
// the new object), and one goroutine, after coalescing a burst, rebuilds just those
// slugs from the cache (routes.BuildSlug, the instances found by the spec.slug
// index) and publishes a table sharing the other slugs' routes (routes.Table.With).
// The first table after the cache synced is a full routes.Build. When the
// apiserver is unreachable the informers keep their last state and retry, so the
// last table keeps serving.
type watcher struct {
	cache    cache.Cache
	reader   client.Reader // the cache; tests substitute another
	handler  *Handler
	log      logr.Logger
	coalesce time.Duration

	kick       chan struct{}
	firstEvent atomic.Int64 // unix nanoseconds of the oldest event not yet in the table
	onSwap     func(*routes.Table)

	mu    sync.Mutex
	dirty map[string]struct{} // slugs whose objects changed since the last update
	all   bool                // an event whose slug is unknown: rebuild everything

	table *routes.Table // the last published table; only the update goroutine touches it
}

func newWatcher(cfg *rest.Config, h *Handler, o Options) (*watcher, error) {
	noCopy := true
	// The transform keeps only what routes.Build reads: owners' annotations and labels do not fill the cache.
	c, err := cache.New(cfg, cache.Options{
		Scheme:                       kubeclient.Scheme(),
		DefaultTransform:             registry.TrimForProxy,
		DefaultUnsafeDisableDeepCopy: &noCopy, // BuildSlug only reads
	})
	if err != nil {
		return nil, fmt.Errorf("creating the Instance/ServiceAccount cache: %w", err)
	}
	w := newWatcherOn(c, h, o)
	w.cache = c
	return w, nil
}

func newWatcherOn(r client.Reader, h *Handler, o Options) *watcher {
	return &watcher{reader: r, handler: h, log: o.Logger.WithName("watch"), coalesce: o.Coalesce,
		kick: make(chan struct{}, 1), onSwap: o.OnTableSwap, dirty: map[string]struct{}{}}
}

func (w *watcher) signal() {
	w.firstEvent.CompareAndSwap(0, time.Now().UnixNano())
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// touch marks the slugs of objs dirty and wakes the update loop. A tombstone
// (a delete the informer missed) counts as the object it holds; anything else it
// cannot place marks the whole table.
func (w *watcher) touch(objs ...any) {
	w.mu.Lock()
	for _, obj := range objs {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		switch o := obj.(type) {
		case *slugwayv1.Instance:
			if o.Spec.Slug != "" {
				w.dirty[o.Spec.Slug] = struct{}{}
			}
		case *slugwayv1.ServiceAccount:
			w.dirty[o.Name] = struct{}{}
		default:
			w.all = true
		}
	}
	w.mu.Unlock()
	w.signal()
}

// events are the informers' handlers: an update marks the slugs of both its old
// and its new object (an Instance may have moved to another slug).
func (w *watcher) events() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { w.touch(obj) },
		UpdateFunc: func(old, obj any) {
			if routingChanged(old, obj) {
				w.touch(old, obj)
			}
		},
		DeleteFunc: func(obj any) { w.touch(obj) },
	}
}

// run starts the informers, builds the first table once they synced (then calls
// ready), and updates it on every change until ctx ends.
func (w *watcher) run(ctx context.Context, ready func()) error {
	if err := w.cache.IndexField(ctx, &slugwayv1.Instance{}, registry.IndexSlug, registry.IndexInstanceSlug); err != nil {
		return fmt.Errorf("indexing Instances by spec.slug: %w", err)
	}
	for _, obj := range []client.Object{&slugwayv1.Instance{}, &slugwayv1.ServiceAccount{}} {
		inf, err := w.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(w.events()); err != nil {
			return err
		}
	}
	cacheErr := make(chan error, 1)
	go func() { cacheErr <- w.cache.Start(ctx) }()
	if !w.cache.WaitForCacheSync(ctx) {
		select {
		case err := <-cacheErr:
			return fmt.Errorf("the Instance/ServiceAccount cache stopped before syncing: %w", err)
		default:
		}
		return ctx.Err()
	}
	if err := w.update(ctx); err != nil { // no table yet: a full build
		return err
	}
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-cacheErr:
			if err == nil {
				err = errors.New("cache stopped")
			}
			return err
		case <-w.kick:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(w.coalesce):
		}
		select { // events during the wait are in this update
		case <-w.kick:
		default:
		}
		if err := w.update(ctx); err != nil {
			w.log.Error(err, "updating the route table; the previous one keeps serving, and the next change retries")
		}
	}
}

// update publishes a table with the dirty slugs rebuilt, or a full build when
// there is no table yet or an event could not be placed. The dirty set is taken
// before the cache is read: an event marks its slugs after the cache holds its
// object, so every change is either read now or marked for the next update.
func (w *watcher) update(ctx context.Context) error {
	since := w.firstEvent.Swap(0)
	w.mu.Lock()
	dirty, all := w.dirty, w.all || w.table == nil
	w.dirty, w.all = map[string]struct{}{}, false
	w.mu.Unlock()
	if !all && len(dirty) == 0 {
		return nil // a kick whose changes the previous update already read
	}
	var t *routes.Table
	var err error
	if all {
		t, err = w.fullTable(ctx)
	} else {
		changed := make(map[string]*routes.Route, len(dirty))
		for slug := range dirty {
			if changed[slug], err = w.slugRoute(ctx, slug); err != nil {
				break
			}
		}
		t = w.table.With(changed)
	}
	if err != nil {
		w.mu.Lock() // retried by the next update
		maps.Copy(w.dirty, dirty)
		w.all = w.all || all
		w.mu.Unlock()
		w.firstEvent.CompareAndSwap(0, since)
		return err
	}
	w.table = t
	w.handler.SetTable(t)
	if since != 0 {
		w.handler.metrics.propagation.Observe(time.Since(time.Unix(0, since)).Seconds())
	}
	if w.onSwap != nil {
		w.onSwap(t)
	}
	w.log.V(1).Info("route table updated", "slugs", len(t.Routes), "rebuilt", len(dirty), "full", all)
	return nil
}

func (w *watcher) fullTable(ctx context.Context) (*routes.Table, error) {
	var sas slugwayv1.ServiceAccountList
	var insts slugwayv1.InstanceList
	if err := w.reader.List(ctx, &sas); err != nil {
		return nil, err
	}
	if err := w.reader.List(ctx, &insts); err != nil {
		return nil, err
	}
	return routes.Build(sas.Items, insts.Items), nil
}

// slugRoute is one slug's route from the cache: nil when it has no ServiceAccount.
func (w *watcher) slugRoute(ctx context.Context, slug string) (*routes.Route, error) {
	var sa slugwayv1.ServiceAccount
	if err := w.reader.Get(ctx, client.ObjectKey{Name: slug}, &sa); apierrors.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading ServiceAccount %q from the cache: %w", slug, err)
	}
	var insts slugwayv1.InstanceList
	if err := w.reader.List(ctx, &insts, client.MatchingFields{registry.IndexSlug: slug}); err != nil {
		return nil, fmt.Errorf("listing the Instances of slug %q from the cache: %w", slug, err)
	}
	return routes.BuildSlug(&sa, insts.Items), nil
}

// routingChanged skips rebuilds for updates the table cannot see, above all the
// controller's heartbeat refreshes (one per instance per --heartbeat-refresh).
func routingChanged(old, obj any) bool {
	switch n := obj.(type) {
	case *slugwayv1.Instance:
		if o, ok := old.(*slugwayv1.Instance); ok {
			return routes.InstanceChanged(o, n)
		}
	case *slugwayv1.ServiceAccount:
		if o, ok := old.(*slugwayv1.ServiceAccount); ok {
			return routes.SlugChanged(o, n)
		}
	}
	return true
}
