package admission_test

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// TestWebhookDownFailsClosed: the webhooks are registered with failurePolicy Fail, so
// while the webhook server (the controller) is down every write they guard is refused,
// for admins too, instead of being let through unchecked. Reads still work, and writes
// work again once the controller is back.
func TestWebhookDownFailsClosed(t *testing.T) {
	ctx := context.Background()
	inst := skeleton(t, "team-a", "skeleton-down")
	reconciled(t, inst)
	origURL := inst.Spec.URL
	stopController()
	t.Cleanup(func() { // if the test failed half-way, the next tests still need the webhooks
		if err := startController(); err != nil {
			t.Fatalf("restarting the controller: %v", err)
		}
	})

	const down = `failed calling webhook "vinstance.slugway.io"`
	const downOnCreate = `failed calling webhook "minstance.slugway.io"` // the claim recorder runs first
	heartbeat := []byte(`{"status":{"lastHeartbeat":"` + time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") + `"}}`)
	denied(t, "alice creates an instance", alice.Create(ctx, instance("team-a", "while-down", "skeleton-svc", freshURL())), downOnCreate)
	denied(t, "mallory creates an instance", mallory.Create(ctx, instance("team-b", "while-down", "skeleton-svc", freshURL())), downOnCreate)
	denied(t, "an admin (system:masters) creates an instance", env.Client.Create(ctx, instance("team-a", "while-down", "skeleton-svc", freshURL())), downOnCreate)
	denied(t, "alice updates her instance", updateAs(alice, inst, func(i *slugwayv1.Instance) { i.Spec.URL = freshURL() }), down)
	denied(t, "mallory patches it", mallory.Patch(ctx, inst, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"url":"http://127.0.0.1:1/"}}`))), down)
	denied(t, "alice renews its heartbeat", alice.Status().Patch(ctx, inst, client.RawPatch(types.MergePatchType, heartbeat)), down)
	denied(t, "mallory deletes it", mallory.Delete(ctx, inst), down)
	denied(t, "mallory deletes the namespace's instances", mallory.DeleteAllOf(ctx, &slugwayv1.Instance{}, client.InNamespace("team-a")), down)
	denied(t, "alice claims a slug", alice.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: objectMeta("", "while-down-svc")}), `failed calling webhook "mserviceaccount.slugway.io"`)
	denied(t, "mallory deletes alice's slug", mallory.Delete(ctx, &slugwayv1.ServiceAccount{ObjectMeta: objectMeta("", "skeleton-svc")}), `failed calling webhook "vserviceaccount.slugway.io"`)

	var got slugwayv1.Instance
	if err := mallory.Get(ctx, client.ObjectKeyFromObject(inst), &got); err != nil {
		t.Fatalf("reads must keep working, and the instance must survive: %v", err)
	}
	if got.Spec.URL != origURL || !got.DeletionTimestamp.IsZero() {
		t.Fatalf("a write got through while the webhook was down: url %q, deletion %v", got.Spec.URL, got.DeletionTimestamp)
	}

	if err := startController(); err != nil {
		t.Fatal(err)
	}
	after := instance("team-a", "after-down", "skeleton-svc", freshURL())
	allowed(t, "alice creates an instance once the controller is back", alice.Create(ctx, after))
	deleteAtCleanup(t, after)
	denied(t, "mallory is refused by the webhook again, not by its absence", mallory.Delete(ctx, inst), notAlices)
}
