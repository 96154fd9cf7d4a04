package controllers

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/kubeclient"
)

// HeartbeatWriter writes the coarse lastHeartbeat refreshes of healthy, probed instances,
// off the reconcile queue: each is one small merge patch of status.lastHeartbeat, with no
// read-modify-write and no reconcile. Health transitions keep the reconcile queue to
// themselves, so at 10,000 instances a dying instance is not written behind 333
// heartbeats a second. Only the leader runs it.
type HeartbeatWriter struct {
	Client  client.Client // cached reads, direct writes
	Workers int

	mu    sync.Mutex
	due   map[types.NamespacedName]time.Time
	queue workqueue.TypedInterface[types.NamespacedName]
}

// NewHeartbeatWriter returns a writer with workers patching in parallel.
func NewHeartbeatWriter(c client.Client, workers int) *HeartbeatWriter {
	return &HeartbeatWriter{
		Client:  c,
		Workers: max(workers, 1),
		due:     map[types.NamespacedName]time.Time{},
		queue:   workqueue.NewTyped[types.NamespacedName](),
	}
}

// Enqueue asks for key's lastHeartbeat to be set to at (the last successful probe).
// Repeated requests for one key before it is written collapse into the latest.
func (w *HeartbeatWriter) Enqueue(key types.NamespacedName, at time.Time) {
	w.mu.Lock()
	w.due[key] = at
	w.mu.Unlock()
	w.queue.Add(key)
}

// Start runs the workers until ctx ends. It implements manager.Runnable.
func (w *HeartbeatWriter) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for range w.Workers {
		wg.Go(func() {
			for {
				key, quit := w.queue.Get()
				if quit {
					return
				}
				w.mu.Lock()
				at := w.due[key]
				delete(w.due, key)
				w.mu.Unlock()
				if err := w.write(ctx, key, at); err != nil && ctx.Err() == nil {
					log.FromContext(ctx).V(1).Info("heartbeat refresh not written; the next probe success retries it", "instance", key, "error", err.Error())
				}
				w.queue.Done(key)
			}
		})
	}
	<-ctx.Done()
	w.queue.ShutDown()
	wg.Wait()
	return nil
}

// write patches lastHeartbeat when the cached instance is routable by the controller's
// last word and its heartbeat is older. Anything else (a pending transition, a deleted
// instance) belongs to the reconciler.
func (w *HeartbeatWriter) write(ctx context.Context, key types.NamespacedName, at time.Time) error {
	var inst slugwayv1.Instance
	if err := w.Client.Get(ctx, key, &inst); err != nil {
		return client.IgnoreNotFound(err)
	}
	s := inst.Status.Status
	if !inst.DeletionTimestamp.IsZero() || (s != slugwayv1.HealthHealthy && s != slugwayv1.HealthDegraded) {
		return nil
	}
	t := kubeclient.HeartbeatTime(at)
	if last := inst.Status.LastHeartbeat; last != nil && !last.Before(&t) {
		return nil
	}
	err := kubeclient.PatchHeartbeat(ctx, w.Client, key, at)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
