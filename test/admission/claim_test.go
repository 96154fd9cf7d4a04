package admission_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/manager"
	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/registry"
)

// TestInstanceRecordsItsClaim: the mutating webhook labels a new Instance with its
// slug's ServiceAccount UID, and the owner can neither forge, change nor drop it.
func TestInstanceRecordsItsClaim(t *testing.T) {
	sa := claim(t, alice, "claim-rec-svc")
	inst := instance("team-b", "claim-rec-1", "claim-rec-svc", freshURL())
	inst.Labels = map[string]string{registry.LabelClaimUID: "forged"}
	mustCreate(t, alice, inst)
	if got := inst.Labels[registry.LabelClaimUID]; got != string(sa.UID) {
		t.Fatalf("label %s = %q, want the ServiceAccount's UID %q", registry.LabelClaimUID, got, sa.UID)
	}
	denied(t, "alice changes the claim label", updateAs(alice, inst, func(i *slugwayv1.Instance) { i.Labels[registry.LabelClaimUID] = "other" }),
		`may not change the label slugway.io/claim-uid`, "delete the instance and create it again")
	denied(t, "alice drops the claim label", updateAs(alice, inst, func(i *slugwayv1.Instance) { delete(i.Labels, registry.LabelClaimUID) }),
		`may not change the label slugway.io/claim-uid`)
	// Admins may (they adopt an instance by setting it); then it is not Owned, until set back.
	allowed(t, "an admin changes the claim label", updateAs(root, inst, func(i *slugwayv1.Instance) { i.Labels[registry.LabelClaimUID] = "other" }))
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		var got slugwayv1.Instance
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: inst.Namespace, Name: inst.Name}, &got); err != nil {
			return err
		}
		if c := apimeta.FindStatusCondition(got.Status.Conditions, slugwayv1.ConditionOwned); c == nil || c.Reason != slugwayv1.ReasonClaimMismatch {
			return fmt.Errorf("Owned condition %+v, want reason %s", c, slugwayv1.ReasonClaimMismatch)
		}
		return nil
	})
	allowed(t, "alice edits her other labels", updateAs(alice, inst, func(i *slugwayv1.Instance) { i.Labels["tier"] = "web" }))
}

// TestReclaimedSlugStartsClean races the release of a slug against many parallel
// creates by its owner, then has another user claim the name. Whatever was admitted for
// the old claim, and whatever survived the release, must never be Owned or routed under
// the new claim; the new owner's own instance is.
func TestReclaimedSlugStartsClean(t *testing.T) {
	ctx := context.Background()
	const slug, workers = "reclaim-svc", 32
	old := claim(t, alice, slug)

	var stop atomic.Bool
	var created atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				if err := alice.Create(ctx, instance("team-b", fmt.Sprintf("reclaim-a-%d-%d", w, i), slug, freshURL())); err == nil {
					created.Add(1)
				}
			}
		})
	}
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if created.Load() < workers {
			return fmt.Errorf("only %d instances created so far", created.Load())
		}
		return nil
	})
	allowed(t, "alice releases her slug while creating instances", alice.Delete(ctx, old))
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		err := env.Client.Get(ctx, types.NamespacedName{Name: slug}, &slugwayv1.ServiceAccount{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("slug %s still exists", slug)
		}
		return err
	})
	// The new claim, while alice's creates keep coming (they are refused: not her slug).
	fresh := claim(t, bob, slug)
	if fresh.UID == old.UID {
		t.Fatal("the new claim has the old UID")
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("alice created %d instances in %d parallel loops before and during the release", created.Load(), workers)
	bobs := instance("team-b", "reclaim-b-1", slug, freshURL())
	mustCreate(t, bob, bobs)

	var list slugwayv1.InstanceList
	if err := env.Client.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	var mine []slugwayv1.Instance
	leftovers := 0
	for _, i := range list.Items {
		if i.Spec.Slug != slug {
			continue
		}
		mine = append(mine, i)
		if i.Name == bobs.Name {
			if i.Labels[registry.LabelClaimUID] != string(fresh.UID) {
				t.Fatalf("bob's instance carries claim %q, want the new claim %q", i.Labels[registry.LabelClaimUID], fresh.UID)
			}
			continue
		}
		leftovers++
		if i.Labels[registry.LabelClaimUID] == string(fresh.UID) {
			t.Fatalf("alice's %s/%s was admitted under bob's claim", i.Namespace, i.Name)
		}
	}
	t.Logf("%d of alice's instances outlived the release (being deleted or stragglers)", leftovers)
	// The proxy's rule, on what the apiserver holds right now: only bob's instance can be routed.
	for _, ep := range routes.BuildSlug(fresh, mine).Endpoints {
		if ep.Key != "team-b/"+bobs.Name {
			t.Fatalf("the proxy would route %s under bob's claim", ep.Key)
		}
	}
	// The controller's word: no leftover is ever Owned under the new claim.
	testenv.Eventually(t, 20*time.Second, func(ctx context.Context) error {
		var list slugwayv1.InstanceList
		if err := env.Client.List(ctx, &list); err != nil {
			return err
		}
		bobOwned := false
		for _, i := range list.Items {
			if i.Spec.Slug != slug {
				continue
			}
			c := apimeta.FindStatusCondition(i.Status.Conditions, slugwayv1.ConditionOwned)
			if i.Name == bobs.Name {
				bobOwned = c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == i.Generation
				continue
			}
			if c != nil && c.Status == metav1.ConditionTrue && c.LastTransitionTime.After(fresh.CreationTimestamp.Add(time.Second)) {
				t.Fatalf("alice's %s/%s turned Owned after bob's claim: %+v", i.Namespace, i.Name, c)
			}
			if i.DeletionTimestamp.IsZero() && (c == nil || c.Reason != slugwayv1.ReasonClaimMismatch) {
				return fmt.Errorf("alice's %s/%s is not yet marked %s: %+v", i.Namespace, i.Name, slugwayv1.ReasonClaimMismatch, c)
			}
		}
		if !bobOwned {
			return fmt.Errorf("bob's instance is not Owned yet")
		}
		return nil
	})
}

// TestMaxInstancesPerSlug: the controller's --max-instances-per-slug refuses the
// Instance beyond the limit, with the count and the flag in the message, for admins
// too; deleting one makes room again.
func TestMaxInstancesPerSlug(t *testing.T) {
	ctx := context.Background()
	controllerWith(t, func(o *manager.Options) { o.MaxInstancesPerSlug = 3 })
	claim(t, alice, "capped-svc")
	var insts []*slugwayv1.Instance
	for i := range 3 {
		inst := instance("team-b", fmt.Sprintf("capped-%d", i), "capped-svc", freshURL())
		mustCreate(t, alice, inst)
		reconciled(t, inst) // in the controller's cache, which the count reads
		insts = append(insts, inst)
	}
	want := []string{`slug "capped-svc" already has 3 instances`, "--max-instances-per-slug (3)", "delete instances it no longer needs"}
	denied(t, "alice creates a 4th instance", alice.Create(ctx, instance("team-b", "capped-3", "capped-svc", freshURL())), want...)
	denied(t, "an admin creates a 4th instance", root.Create(ctx, instance("team-b", "capped-3", "capped-svc", freshURL())), want...)
	allowed(t, "alice deletes one", alice.Delete(ctx, insts[0]))
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		return alice.Create(ctx, instance("team-b", "capped-3", "capped-svc", freshURL()))
	})
}
