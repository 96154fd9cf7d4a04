package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/manager"
	"github.com/slugway/slugway/proxy/routes"
)

// watcher feeds the handler: informers on Instances and ServiceAccounts signal
// every change, and one goroutine rebuilds the route table from the cache,
// coalescing bursts. When the apiserver is unreachable the informers keep their
// last state and retry, so the last table keeps serving.
type watcher struct {
	cache    cache.Cache
	handler  *Handler
	log      logr.Logger
	coalesce time.Duration

	kick       chan struct{}
	firstEvent atomic.Int64 // unix nanoseconds of the oldest event not yet in the table
	onSwap     func(*routes.Table)
}

func newWatcher(cfg *rest.Config, h *Handler, o Options) (*watcher, error) {
	noCopy := true
	c, err := cache.New(cfg, cache.Options{
		Scheme:                       manager.Scheme(),
		DefaultTransform:             cache.TransformStripManagedFields(),
		DefaultUnsafeDisableDeepCopy: &noCopy, // Build only reads
	})
	if err != nil {
		return nil, fmt.Errorf("creating the Instance/ServiceAccount cache: %w", err)
	}
	return &watcher{cache: c, handler: h, log: o.Logger.WithName("watch"), coalesce: o.Coalesce, kick: make(chan struct{}, 1), onSwap: o.OnTableSwap}, nil
}

func (w *watcher) signal() {
	w.firstEvent.CompareAndSwap(0, time.Now().UnixNano())
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run starts the informers, builds the first table once they synced (then calls
// ready), and rebuilds on every change until ctx ends.
func (w *watcher) run(ctx context.Context, ready func()) error {
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { w.signal() },
		UpdateFunc: func(old, obj any) {
			if routingChanged(old, obj) {
				w.signal()
			}
		},
		DeleteFunc: func(any) { w.signal() },
	}
	for _, obj := range []client.Object{&slugwayv1.Instance{}, &slugwayv1.ServiceAccount{}} {
		inf, err := w.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
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
	if err := w.rebuild(ctx); err != nil {
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
		select { // events during the wait are in this rebuild
		case <-w.kick:
		default:
		}
		if err := w.rebuild(ctx); err != nil {
			w.log.Error(err, "rebuilding the route table; the previous one keeps serving")
		}
	}
}

func (w *watcher) rebuild(ctx context.Context) error {
	since := w.firstEvent.Swap(0)
	var sas slugwayv1.ServiceAccountList
	var insts slugwayv1.InstanceList
	if err := w.cache.List(ctx, &sas); err != nil {
		return err
	}
	if err := w.cache.List(ctx, &insts); err != nil {
		return err
	}
	t := routes.Build(sas.Items, insts.Items)
	w.handler.SetTable(t)
	if since != 0 {
		w.handler.metrics.propagation.Observe(time.Since(time.Unix(0, since)).Seconds())
	}
	if w.onSwap != nil {
		w.onSwap(t)
	}
	w.log.V(1).Info("route table rebuilt", "slugs", len(t.Routes), "instances", len(insts.Items))
	return nil
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
