// Package controllers reconciles slugway's objects: it decides whether each
// Instance is owned and healthy and writes that into status, and aggregates
// each slug's instances into its ServiceAccount's status.
package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/health"
	"github.com/slugway/slugway/registry"
)

// conflictRequeue is how soon a reconcile whose status write lost an optimistic-lock
// conflict runs again: long enough for the cache to see the newer object.
const conflictRequeue = 100 * time.Millisecond

// InstanceReconciler writes each Instance's Owned and Ready conditions, its health
// status and a coarse lastHeartbeat. Probing happens in the Monitor, off the
// reconcile path; the Monitor asks for a reconcile only when something worth
// writing happened, so the apiserver sees a write per transition plus one per
// HeartbeatRefresh, never one per probe.
type InstanceReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Monitor  *health.Monitor[types.NamespacedName]
	// Events carries the Monitor's notifications into the controller's queue.
	Events chan event.TypedGenericEvent[*slugwayv1.Instance]

	// ExpireAfter deletes instances that have been Unreachable this long. Zero disables it.
	ExpireAfter time.Duration
	// URLHoldGrace is how long an instance may be Unreachable before another slug's
	// instance with the same URL takes the URL over (registry.URLRule). Zero disables it.
	URLHoldGrace time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time

	// leadingSince is when this replica began to lead (unix nanoseconds); see LeadingSince.
	leadingSince atomic.Int64
}

// LeadingSince records when this replica began to lead. A heartbeat-mode instance gets a
// full TTL from then before it can expire: while the apiserver or the previous leader was
// away, services could not renew their heartbeats, and an outage must not expire them all.
func (r *InstanceReconciler) LeadingSince(t time.Time) { r.leadingSince.Store(t.UnixNano()) }

// +kubebuilder:rbac:groups=slugway.io,resources=instances,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=slugway.io,resources=instances/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=slugway.io,resources=serviceaccounts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=slugway.io,resources=serviceaccounts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=slugway.io,resources=serviceaccounts/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile computes an Instance's status from the cluster and the Monitor, and writes it if it changed.
func (r *InstanceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var inst slugwayv1.Instance
	if err := r.Get(ctx, req.NamespacedName, &inst); err != nil {
		if apierrors.IsNotFound(err) {
			r.Monitor.Forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !inst.DeletionTimestamp.IsZero() {
		r.Monitor.Forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	now := r.Now()

	owned, owner, urlWait, err := r.ownership(ctx, &inst, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	hv, requeue := r.health(&inst, owner, now)
	requeue = sooner(requeue, urlWait)

	desired := inst.Status.DeepCopy()
	desired.ObservedGeneration = inst.Generation
	apimeta.SetStatusCondition(&desired.Conditions, owned)
	if hv.health != "" {
		desired.Status = hv.health
	}
	if desired.Status == "" {
		desired.Status = slugwayv1.HealthUnknown
	}
	if hv.heartbeat != nil {
		desired.LastHeartbeat = hv.heartbeat
	}
	if hv.health == "" {
		// Nothing new from the prober: keep the last word on readiness instead of rewriting it.
		if old := apimeta.FindStatusCondition(inst.Status.Conditions, slugwayv1.ConditionReady); old != nil {
			hv.message = old.Message
		}
	}
	apimeta.SetStatusCondition(&desired.Conditions, readyCondition(desired.Status, owned, hv.message, inst.Generation))

	if err := r.writeStatus(ctx, &inst, desired); err != nil {
		if apierrors.IsConflict(err) {
			// Our cached copy was stale (a heartbeat or our own last write is still on its
			// way): recompute from the fresh object shortly, rather than log an error.
			return ctrl.Result{RequeueAfter: conflictRequeue}, nil
		}
		return ctrl.Result{}, err
	}

	if wait, expired := r.expiry(&inst, now); expired {
		r.Recorder.Eventf(&inst, nil, corev1.EventTypeWarning, "Expired", "Delete",
			"deleting instance: Unreachable for longer than %s (--expire-unreachable-after)", r.ExpireAfter)
		return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, &inst, client.Preconditions{UID: &inst.UID}))
	} else {
		requeue = sooner(requeue, wait)
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// sooner returns the shorter of two positive waits (zero: no wait).
func sooner(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// ownership decides the Owned condition: the slug must be claimed, and the URL
// must not be held by an instance of another slug. It also returns the slug's owner,
// and how soon the answer may change by itself (the holder's grace running out).
func (r *InstanceReconciler) ownership(ctx context.Context, inst *slugwayv1.Instance, now time.Time) (metav1.Condition, string, time.Duration, error) {
	c := metav1.Condition{Type: slugwayv1.ConditionOwned, ObservedGeneration: inst.Generation}
	var sa slugwayv1.ServiceAccount
	if err := r.Get(ctx, types.NamespacedName{Name: inst.Spec.Slug}, &sa); err != nil {
		if !apierrors.IsNotFound(err) {
			return c, "", 0, err
		}
		c.Status, c.Reason = metav1.ConditionFalse, slugwayv1.ReasonSlugNotFound
		c.Message = fmt.Sprintf("slug %q is not claimed: create the ServiceAccount %q (kind ServiceAccount, group slugway.io) first; the instance is not routable until then", inst.Spec.Slug, inst.Spec.Slug)
		return c, sa.Spec.Owner, 0, nil
	}
	if !sa.DeletionTimestamp.IsZero() {
		c.Status, c.Reason = metav1.ConditionFalse, slugwayv1.ReasonSlugNotFound
		c.Message = fmt.Sprintf("slug %q is being deleted", inst.Spec.Slug)
		return c, sa.Spec.Owner, 0, nil
	}
	if !registry.BoundToClaim(inst, &sa) {
		c.Status, c.Reason = metav1.ConditionFalse, slugwayv1.ReasonClaimMismatch
		if uid, ok := inst.Labels[registry.LabelClaimUID]; ok {
			c.Message = fmt.Sprintf("instance was admitted for an earlier claim of slug %q (ServiceAccount UID %q, label %s), which was released; the current claim (UID %q, owner %q) does not own it: delete it and register it again",
				inst.Spec.Slug, uid, registry.LabelClaimUID, sa.UID, sa.Spec.Owner)
		} else {
			c.Message = fmt.Sprintf("instance was created before the current claim of slug %q (ServiceAccount UID %q, owner %q, created %s), so it may stem from an earlier one: delete it and register it again, or have an admin set its label %s to %q",
				inst.Spec.Slug, sa.UID, sa.Spec.Owner, sa.CreationTimestamp.UTC().Format(time.RFC3339), registry.LabelClaimUID, sa.UID)
		}
		return c, sa.Spec.Owner, 0, nil
	}
	key, err := registry.URLKey(inst.Spec.URL)
	if err != nil {
		// Admission refuses these; one admitted before that rule cannot be told apart from its aliases.
		c.Status, c.Reason = metav1.ConditionFalse, slugwayv1.ReasonURLInvalid
		c.Message = fmt.Sprintf("spec.url %q has no canonical form (%v), so it cannot be checked against other slugs' URLs: fix spec.url", inst.Spec.URL, err)
		return c, sa.Spec.Owner, 0, nil
	}
	var same slugwayv1.InstanceList
	if err := r.List(ctx, &same, client.MatchingFields{registry.IndexURL: key}); err != nil {
		return c, "", 0, err
	}
	rule := registry.URLRule{Grace: r.URLHoldGrace, Now: now}
	if holder := rule.Holder(inst, same.Items); holder != nil {
		c.Status, c.Reason, c.Message = urlLost(rule, inst, holder)
		return c, sa.Spec.Owner, rule.LapsesIn(holder), nil
	}
	c.Status, c.Reason = metav1.ConditionTrue, slugwayv1.ReasonSlugClaimed
	c.Message = fmt.Sprintf("slug %q is claimed by %q", sa.Name, sa.Spec.Owner)
	return c, sa.Spec.Owner, 0, nil
}

// urlLost explains why inst does not hold its URL: held by another slug (URLConflict),
// or released to it because inst was Unreachable for the grace (URLReleased). A
// released instance stays released when it comes back, and keeps its message.
func urlLost(rule registry.URLRule, inst, holder *slugwayv1.Instance) (metav1.ConditionStatus, string, string) {
	by := fmt.Sprintf("instance %s/%s of slug %q", holder.Namespace, holder.Name, holder.Spec.Slug)
	if lapsed, since := rule.Lapsed(inst); lapsed || registry.Released(inst) {
		old := apimeta.FindStatusCondition(inst.Status.Conditions, slugwayv1.ConditionOwned)
		if !lapsed && old != nil && old.Reason == slugwayv1.ReasonURLReleased && strings.Contains(old.Message, by) {
			return metav1.ConditionFalse, slugwayv1.ReasonURLReleased, old.Message
		}
		why := "this instance was Unreachable for longer than --url-hold-grace"
		if lapsed {
			why = fmt.Sprintf("this instance has been Unreachable since %s, longer than --url-hold-grace (%s)", since.UTC().Format(time.RFC3339), rule.Grace)
		}
		return metav1.ConditionFalse, slugwayv1.ReasonURLReleased, fmt.Sprintf("URL %s went to %s: %s. This instance is kept but not routed, and it does not take the URL back while that instance holds it; delete it if its backend is gone for good", inst.Spec.URL, by, why)
	}
	msg := fmt.Sprintf("URL %s is already served by %s; one URL belongs to one slug", inst.Spec.URL, by)
	if since, ok := registry.UnreachableSince(holder); ok && rule.Grace > 0 {
		msg += fmt.Sprintf(" (that instance has been Unreachable since %s: it yields the URL at %s, after --url-hold-grace of %s)", since.UTC().Format(time.RFC3339), since.Add(rule.Grace).UTC().Format(time.RFC3339), rule.Grace)
	}
	return metav1.ConditionFalse, slugwayv1.ReasonURLConflict, msg
}

type healthView struct {
	health    slugwayv1.Health // empty: nothing new is known
	heartbeat *metav1.Time     // nil: leave lastHeartbeat as it is
	message   string
}

// health reads the instance's health: from its heartbeat in push mode, from the Monitor otherwise.
// It returns how long until the answer may change by itself.
func (r *InstanceReconciler) health(inst *slugwayv1.Instance, owner string, now time.Time) (healthView, time.Duration) {
	key := client.ObjectKeyFromObject(inst)
	hc := inst.Spec.HealthCheck
	if hc.Type == slugwayv1.HealthCheckHeartbeat {
		r.Monitor.Forget(key)
		return heartbeatHealth(inst.Status.LastHeartbeat, hc.TTLOrDefault(), now, time.Unix(0, r.leadingSince.Load()))
	}
	spec, err := probeSpec(inst, owner)
	if err != nil {
		return healthView{health: slugwayv1.HealthUnreachable, message: "cannot probe: " + err.Error()}, 0
	}
	r.Monitor.Ensure(key, spec)
	st, _ := r.Monitor.State(key)
	if st.Health == health.Unknown {
		if inst.Status.ObservedGeneration != inst.Generation && inst.Status.Status != slugwayv1.HealthUnknown && inst.Status.Status != "" {
			// The spec changed since status was written, and the Monitor has not probed
			// the new target yet: the old health is about the old URL, so the new one
			// is not routed until its first probe.
			return healthView{health: slugwayv1.HealthUnknown, message: "the spec changed: waiting for the first probe of " + inst.Spec.URL}, 0
		}
		// Not probed yet (new instance, or a restarted controller):
		// keep what status says rather than flap it to Unknown.
		return healthView{message: "waiting for the first probe"}, 0
	}
	hv := healthView{health: slugwayv1.Health(st.Health), message: st.Last.Message}
	if !st.LastSuccess.IsZero() {
		last := inst.Status.LastHeartbeat
		// A transition carries the heartbeat along. Routine refreshes are the
		// HeartbeatWriter's; this only catches one that is long overdue (its write failed).
		if last == nil || hv.health != inst.Status.Status || st.LastSuccess.Sub(last.Time) >= 2*r.Monitor.RefreshInterval() {
			t := metav1.NewTime(st.LastSuccess.Truncate(time.Second))
			hv.heartbeat = &t
		}
	}
	return hv, 0
}

// heartbeatHealth is push mode: Healthy while lastHeartbeat is younger than ttl, counted
// from no earlier than since.
func heartbeatHealth(last *metav1.Time, ttl time.Duration, now, since time.Time) (healthView, time.Duration) {
	if last == nil {
		return healthView{health: slugwayv1.HealthUnknown, message: "no heartbeat received yet"}, 0
	}
	// The stored time has one-second precision, so the beat happened up to 1s after it:
	// count the TTL from the end of that second, so an instance never expires early.
	from := last.Add(time.Second)
	if since.After(from) {
		from = since
	}
	age := now.Sub(from)
	if age >= ttl {
		return healthView{health: slugwayv1.HealthUnreachable, message: fmt.Sprintf("no heartbeat within the TTL of %s (last at %s)", ttl, last.UTC().Format(time.RFC3339))}, 0
	}
	return healthView{health: slugwayv1.HealthHealthy, message: fmt.Sprintf("heartbeat within the TTL of %s", ttl)}, ttl - age + 100*time.Millisecond
}

// probeSpec turns an Instance's health check into a Monitor spec. Its fairness groups
// are its slug and the slug's owner, so that neither one slug nor one owner's many
// slugs can hold more than their share of the probe workers.
func probeSpec(inst *slugwayv1.Instance, owner string) (health.Spec, error) {
	hc := inst.Spec.HealthCheck
	t := health.Target{Kind: health.KindHTTP, Timeout: hc.TimeoutOrDefault()}
	var err error
	if hc.Type == slugwayv1.HealthCheckTCP {
		t.Kind = health.KindTCP
		t.Address, err = health.HostPort(inst.Spec.URL)
	} else {
		t.URL, err = health.ProbeURL(inst.Spec.URL, hc.Path)
	}
	groups := health.Groups{"slug:" + inst.Spec.Slug}
	if owner != "" {
		groups[1] = "owner:" + owner
	}
	return health.Spec{
		Target:   t,
		Groups:   groups,
		Interval: hc.IntervalOrDefault(),
		Thresholds: health.Thresholds{
			Healthy:       int(hc.HealthyThreshold),
			Unhealthy:     int(hc.UnhealthyThreshold),
			DegradedAfter: hc.DegradedAfterOrDefault(),
		},
	}, err
}

// readyCondition: Ready is True when the instance is owned and Healthy or Degraded.
func readyCondition(h slugwayv1.Health, owned metav1.Condition, msg string, gen int64) metav1.Condition {
	c := metav1.Condition{Type: slugwayv1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: gen, Message: msg}
	switch {
	case owned.Status != metav1.ConditionTrue:
		c.Reason, c.Message = slugwayv1.ReasonNotOwned, owned.Message
	case h == slugwayv1.HealthHealthy:
		c.Status, c.Reason = metav1.ConditionTrue, slugwayv1.ReasonProbeSucceeded
	case h == slugwayv1.HealthDegraded:
		c.Status, c.Reason = metav1.ConditionTrue, slugwayv1.ReasonProbeSlow
		c.Message = "answering, but slower than healthCheck.degradedAfter"
	case h == slugwayv1.HealthUnreachable:
		c.Reason = slugwayv1.ReasonProbeFailed
	default:
		c.Reason = slugwayv1.ReasonNotProbed
	}
	if c.Message == "" {
		c.Message = string(h)
	}
	return c
}

// writeStatus patches status when it differs, and records an Event per transition.
func (r *InstanceReconciler) writeStatus(ctx context.Context, inst *slugwayv1.Instance, desired *slugwayv1.InstanceStatus) error {
	// Semantic equality: SetStatusCondition keeps a condition's transition time while its status holds.
	if equality.Semantic.DeepEqual(&inst.Status, desired) {
		return nil
	}
	before := inst.DeepCopy()
	inst.Status = *desired
	if err := r.Status().Patch(ctx, inst, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return err
	}
	if before.Status.Status != desired.Status && desired.Status != slugwayv1.HealthUnknown {
		typ := corev1.EventTypeNormal
		if desired.Status == slugwayv1.HealthUnreachable {
			typ = corev1.EventTypeWarning
		}
		ready := apimeta.FindStatusCondition(desired.Conditions, slugwayv1.ConditionReady)
		r.Recorder.Eventf(inst, nil, typ, string(desired.Status), "Probe", "%s -> %s: %s", orUnknown(before.Status.Status), desired.Status, ready.Message)
	}
	bo := apimeta.FindStatusCondition(before.Status.Conditions, slugwayv1.ConditionOwned)
	no := apimeta.FindStatusCondition(desired.Conditions, slugwayv1.ConditionOwned)
	if bo == nil || bo.Status != no.Status || bo.Reason != no.Reason {
		typ := corev1.EventTypeNormal
		if no.Status != metav1.ConditionTrue {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(inst, nil, typ, no.Reason, "Reconcile", "%s", no.Message)
	}
	return nil
}

func orUnknown(h slugwayv1.Health) slugwayv1.Health {
	if h == "" {
		return slugwayv1.HealthUnknown
	}
	return h
}

// expiry says whether an Unreachable instance has outlived ExpireAfter, or how long until it will.
func (r *InstanceReconciler) expiry(inst *slugwayv1.Instance, now time.Time) (time.Duration, bool) {
	if r.ExpireAfter <= 0 {
		return 0, false
	}
	since, ok := registry.UnreachableSince(inst)
	if !ok {
		return 0, false
	}
	left := since.Add(r.ExpireAfter).Sub(now)
	if left <= 0 {
		return 0, true
	}
	return left, false
}

// SetupWithManager wires the controller: Instances, their ServiceAccounts, instances that
// share a URL, and the Monitor's notifications all lead to a reconcile.
func (r *InstanceReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Events == nil {
		r.Events = make(chan event.TypedGenericEvent[*slugwayv1.Instance], 1024)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("instance").
		For(&slugwayv1.Instance{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, statusChanged()))).
		Watches(&slugwayv1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(r.instancesOfSlug)).
		Watches(&slugwayv1.Instance{}, handler.EnqueueRequestsFromMapFunc(r.instancesSharingURL)).
		WatchesRawSource(source.Channel(r.Events, &handler.TypedEnqueueRequestForObject[*slugwayv1.Instance]{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Complete(r)
}

// NotifyFunc returns the callback the Monitor uses to ask for a reconcile.
func (r *InstanceReconciler) NotifyFunc(ctx context.Context) func(types.NamespacedName) {
	return func(key types.NamespacedName) {
		obj := &slugwayv1.Instance{}
		obj.Name, obj.Namespace = key.Name, key.Namespace
		select {
		case r.Events <- event.TypedGenericEvent[*slugwayv1.Instance]{Object: obj}:
		case <-ctx.Done():
		}
	}
}

// statusChanged lets through the status updates the reconciler must see, which
// GenerationChangedPredicate would drop: a heartbeat renewed by the service in
// heartbeat mode, and a status rewritten by someone else. The controller's own
// heartbeat refreshes of probed instances are not among them.
func statusChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*slugwayv1.Instance)
		n, ok2 := e.ObjectNew.(*slugwayv1.Instance)
		if !ok1 || !ok2 {
			return true
		}
		if o.Status.Status != n.Status.Status {
			return true
		}
		return n.Spec.HealthCheck.Type == slugwayv1.HealthCheckHeartbeat && !o.Status.LastHeartbeat.Equal(n.Status.LastHeartbeat)
	}}
}

func (r *InstanceReconciler) instancesOfSlug(ctx context.Context, o client.Object) []reconcile.Request {
	var list slugwayv1.InstanceList
	if err := r.List(ctx, &list, client.MatchingFields{registry.IndexSlug: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing instances of slug", "slug", o.GetName())
		return nil
	}
	return requests(list.Items, "")
}

// instancesSharingURL re-reconciles the other instances with the same URL when one
// changes or goes away, so a URLConflict clears when the holder leaves, and the
// waiting instance learns when the holder turns Unreachable (and so when its
// --url-hold-grace runs out) or recovers.
func (r *InstanceReconciler) instancesSharingURL(ctx context.Context, o client.Object) []reconcile.Request {
	inst, ok := o.(*slugwayv1.Instance)
	if !ok {
		return nil
	}
	var list slugwayv1.InstanceList
	if err := r.List(ctx, &list, client.MatchingFields{registry.IndexURL: registry.NormalizeURL(inst.Spec.URL)}); err != nil {
		log.FromContext(ctx).Error(err, "listing instances by URL")
		return nil
	}
	return requests(list.Items, inst.Namespace+"/"+inst.Name)
}

func requests(items []slugwayv1.Instance, skip string) []reconcile.Request {
	out := make([]reconcile.Request, 0, len(items))
	for _, it := range items {
		if it.Namespace+"/"+it.Name == skip {
			continue
		}
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: it.Namespace, Name: it.Name}})
	}
	return out
}
