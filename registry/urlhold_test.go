package registry

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// claimant builds an instance of slug created at t0+created, whose health is h since
// t0+since (Ready went False then, if h is Unreachable), optionally already released.
func claimant(name, slug string, created time.Duration, h slugwayv1.Health, since time.Duration, released bool) slugwayv1.Instance {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	inst := slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, CreationTimestamp: metav1.NewTime(t0.Add(created))},
		Spec:       slugwayv1.InstanceSpec{Slug: slug, URL: "http://10.0.0.7:8080"},
		Status:     slugwayv1.InstanceStatus{Status: h},
	}
	ready := metav1.Condition{Type: slugwayv1.ConditionReady, Status: metav1.ConditionFalse, Reason: slugwayv1.ReasonProbeFailed, LastTransitionTime: metav1.NewTime(t0.Add(since))}
	if h == slugwayv1.HealthHealthy {
		ready.Status, ready.Reason = metav1.ConditionTrue, slugwayv1.ReasonProbeSucceeded
	}
	owned := metav1.Condition{Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonSlugClaimed}
	if released {
		owned.Status, owned.Reason = metav1.ConditionFalse, slugwayv1.ReasonURLReleased
		ready.Status, ready.Reason = metav1.ConditionFalse, slugwayv1.ReasonNotOwned
	}
	inst.Status.Conditions = []metav1.Condition{owned, ready}
	return inst
}

// TestURLRuleHolder: who holds a URL claimed by instances of two or three slugs, given
// their health, since when, their creation order and whether one was released.
func TestURLRuleHolder(t *testing.T) {
	const grace = 5 * time.Minute
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	H, U := slugwayv1.HealthHealthy, slugwayv1.HealthUnreachable
	cases := []struct {
		name  string
		grace time.Duration
		now   time.Duration // since t0
		insts []slugwayv1.Instance
		want  string // the instance no other-slug instance is ahead of, among those of slug "b" or "a"
	}{
		{"both healthy: the older holds", grace, time.Hour,
			[]slugwayv1.Instance{claimant("old", "a", 0, H, 0, false), claimant("new", "b", time.Minute, H, 0, false)}, "old"},
		{"holder Unreachable within the grace keeps it", grace, 14 * time.Minute,
			[]slugwayv1.Instance{claimant("old", "a", 0, U, 10*time.Minute, false), claimant("new", "b", time.Minute, H, 0, false)}, "old"},
		{"holder Unreachable for exactly the grace yields", grace, 15 * time.Minute,
			[]slugwayv1.Instance{claimant("old", "a", 0, U, 10*time.Minute, false), claimant("new", "b", time.Minute, H, 0, false)}, "new"},
		{"a lapsed holder yields even to an instance not probed yet", grace, time.Hour,
			[]slugwayv1.Instance{claimant("old", "a", 0, U, 0, false), claimant("new", "b", 59*time.Minute, slugwayv1.HealthUnknown, 0, false)}, "new"},
		{"grace 0: the older holds whatever its health", 0, 24 * time.Hour,
			[]slugwayv1.Instance{claimant("old", "a", 0, U, 0, false), claimant("new", "b", time.Minute, H, 0, false)}, "old"},
		{"a released holder that came back does not take the URL back", grace, time.Hour,
			[]slugwayv1.Instance{claimant("old", "a", 0, H, 0, true), claimant("new", "b", time.Minute, H, 0, false)}, "new"},
		{"nor while the new holder is Unreachable within the grace", grace, time.Hour,
			[]slugwayv1.Instance{claimant("old", "a", 0, H, 0, true), claimant("new", "b", time.Minute, U, 58*time.Minute, false)}, "new"},
		{"a released one regains it when the new holder lapses in turn", grace, time.Hour,
			[]slugwayv1.Instance{claimant("old", "a", 0, H, 0, true), claimant("new", "b", time.Minute, U, 50*time.Minute, false)}, "old"},
		{"both lapsed: the older holds", grace, time.Hour,
			[]slugwayv1.Instance{claimant("old", "a", 0, U, 0, false), claimant("new", "b", time.Minute, U, 10*time.Minute, false)}, "old"},
		{"three slugs: the oldest live one holds", grace, time.Hour,
			[]slugwayv1.Instance{claimant("dead", "a", 0, U, 0, false), claimant("mid", "b", time.Minute, H, 0, false), claimant("young", "c", 2*time.Minute, H, 0, false)}, "mid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rule := URLRule{Grace: c.grace, Now: t0.Add(c.now)}
			var holders []string
			for i := range c.insts {
				if rule.Holder(&c.insts[i], c.insts) == nil {
					holders = append(holders, c.insts[i].Name)
				}
			}
			if len(holders) != 1 || holders[0] != c.want {
				t.Errorf("instances holding the URL: %v, want only %s", holders, c.want)
			}
			// The webhook admits a newcomer of slug "z" exactly when the holder yields.
			newcomer := claimant("newcomer", "z", c.now, slugwayv1.HealthUnknown, 0, false)
			admitted := true
			for i := range c.insts {
				if !rule.Yields(&c.insts[i]) {
					admitted = false
				}
			}
			if got := rule.Holder(&newcomer, append(c.insts, newcomer)) == nil; got != admitted {
				t.Errorf("newcomer holds: %v, but webhook admits: %v", got, admitted)
			}
		})
	}
}

// TestUnreachableSince: Ready's turn to False counts, not status.lastHeartbeat, which
// the owner may write: a dead holder's owner cannot keep the URL by renewing it.
func TestUnreachableSince(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	inst := claimant("x", "a", 0, slugwayv1.HealthUnreachable, time.Minute, false)
	if got, ok := UnreachableSince(&inst); !ok || !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("since %v %v, want Ready's transition %v", got, ok, t0.Add(time.Minute))
	}
	hb := metav1.NewTime(t0.Add(time.Hour)) // written by the owner
	inst.Status.LastHeartbeat = &hb
	if got, _ := UnreachableSince(&inst); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("since %v: the owner's lastHeartbeat moved it", got)
	}
	rule := URLRule{Grace: 5 * time.Minute, Now: t0.Add(3 * time.Minute)}
	if got := rule.LapsesIn(&inst); got != 3*time.Minute {
		t.Errorf("LapsesIn = %v, want 3m", got)
	}
	healthy := claimant("y", "a", 0, slugwayv1.HealthHealthy, 0, false)
	if _, ok := UnreachableSince(&healthy); ok || rule.LapsesIn(&healthy) != 0 {
		t.Error("a Healthy instance counts as Unreachable")
	}
}
