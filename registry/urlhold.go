package registry

import (
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// URLRule decides which of several slugs' instances holds a URL they all claim
// (same URLKey). The controller and the admission webhook apply the same rule.
//
// Instances are ranked in three standings, and within a standing the older one
// holds (Holds):
//
//  1. in good standing: not released, and not Unreachable for Grace or longer;
//  2. released: its Owned condition says slugwayv1.ReasonURLReleased (it lost the URL while
//     Unreachable) and it is reachable again, or not for Grace yet;
//  3. lapsed: Unreachable, continuously, for Grace or longer.
//
// So a holder that has been dead for Grace yields to any other claimant, and when it
// comes back it does not take the URL back from the one that holds it now: a
// released instance regains the URL only when no instance in good standing claims it
// (the new holder is deleted, or lapses in turn). A Grace of zero turns the rule off:
// the older instance holds whatever its health (only the released mark of an earlier
// run still counts).
type URLRule struct {
	// Grace is how long an instance may be Unreachable before it stops holding its URL
	// (--url-hold-grace). Zero: never.
	Grace time.Duration
	// Now is the time the rule is applied at.
	Now time.Time
}

// Standings of an instance under URLRule, best first.
const (
	standingGood = iota
	standingReleased
	standingLapsed
)

// UnreachableSince returns since when inst has been Unreachable: when its Ready
// condition last turned False. ok is false unless the status says Unreachable.
//
// Only the controller writes conditions; status.lastHeartbeat is not used, because the
// owner may write it (to renew a heartbeat) and would then push the time forward at
// will. For an instance whose Ready was already False for another reason (not owned)
// when it became Unreachable, the time is that earlier one: such an instance does not
// hold its URL anyway.
func UnreachableSince(inst *slugwayv1.Instance) (since time.Time, ok bool) {
	if inst.Status.Status != slugwayv1.HealthUnreachable {
		return time.Time{}, false
	}
	ready := apimeta.FindStatusCondition(inst.Status.Conditions, slugwayv1.ConditionReady)
	if ready == nil || ready.Status == metav1.ConditionTrue {
		return time.Time{}, false
	}
	return ready.LastTransitionTime.Time, true
}

// Lapsed reports whether inst has been Unreachable for Grace or longer, and since when
// it has been Unreachable.
func (r URLRule) Lapsed(inst *slugwayv1.Instance) (bool, time.Time) {
	since, ok := UnreachableSince(inst)
	if !ok || r.Grace <= 0 {
		return false, since
	}
	return !r.Now.Before(since.Add(r.Grace)), since
}

// LapsesIn returns how long until inst lapses if it stays Unreachable: positive only
// for an Unreachable instance that has not lapsed yet (with the rule on).
func (r URLRule) LapsesIn(inst *slugwayv1.Instance) time.Duration {
	since, ok := UnreachableSince(inst)
	if !ok || r.Grace <= 0 {
		return 0
	}
	return max(since.Add(r.Grace).Sub(r.Now), 0)
}

// Released reports whether inst lost its URL to another slug while Unreachable.
func Released(inst *slugwayv1.Instance) bool {
	c := apimeta.FindStatusCondition(inst.Status.Conditions, slugwayv1.ConditionOwned)
	return c != nil && c.Status == metav1.ConditionFalse && c.Reason == slugwayv1.ReasonURLReleased
}

func (r URLRule) standing(inst *slugwayv1.Instance) int {
	if lapsed, _ := r.Lapsed(inst); lapsed {
		return standingLapsed
	}
	if Released(inst) {
		return standingReleased
	}
	return standingGood
}

// Ahead reports whether a takes precedence over b for a URL both claim.
func (r URLRule) Ahead(a, b *slugwayv1.Instance) bool {
	if sa, sb := r.standing(a), r.standing(b); sa != sb {
		return sa < sb
	}
	return Holds(a, b)
}

// Yields reports whether inst gives way to any newcomer of another slug: it has
// lapsed, or was released. The admission webhook admits a URL whose every other-slug
// claimant yields.
func (r URLRule) Yields(inst *slugwayv1.Instance) bool {
	return r.standing(inst) != standingGood
}

// Holder returns, among instances sharing one URL key, the one of another slug that
// holds the URL ahead of inst, or nil if inst is not in conflict.
func (r URLRule) Holder(inst *slugwayv1.Instance, sameURL []slugwayv1.Instance) *slugwayv1.Instance {
	var holder *slugwayv1.Instance
	for i := range sameURL {
		other := &sameURL[i]
		if other.Spec.Slug == inst.Spec.Slug || other.DeletionTimestamp != nil {
			continue
		}
		if r.Ahead(other, inst) && (holder == nil || r.Ahead(other, holder)) {
			holder = other
		}
	}
	return holder
}
