package admission_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
)

const notAlices = `user "mallory" does not own slug "skeleton-svc" (owner "alice")`

// skeleton claims "skeleton-svc" for alice (once) and gives her an instance in ns,
// deleted when the test ends.
func skeleton(t *testing.T, ns, name string) *slugwayv1.Instance {
	t.Helper()
	ctx := context.Background()
	var sa slugwayv1.ServiceAccount
	if err := env.Client.Get(ctx, types.NamespacedName{Name: "skeleton-svc"}, &sa); apierrors.IsNotFound(err) {
		claim(t, alice, "skeleton-svc")
	}
	inst := instance(ns, name, "skeleton-svc", freshURL())
	mustCreate(t, alice, inst)
	deleteAtCleanup(t, inst)
	return inst
}

func TestOwnerClaimsSlugAndRegistersInstance(t *testing.T) {
	ctx := context.Background()
	sa := claim(t, alice, "claimed-svc")
	if sa.Spec.Owner != "alice" {
		t.Fatalf("spec.owner = %q, want the mutating webhook to fill in the creating user %q", sa.Spec.Owner, "alice")
	}
	if !containsString(sa.Finalizers, "slugway.io/instances") {
		t.Fatalf("finalizers = %v, want the webhook to add slugway.io/instances at creation", sa.Finalizers)
	}
	inst := instance("team-a", "claimed-1", "claimed-svc", freshURL())
	allowed(t, "alice creates an instance of her slug", alice.Create(ctx, inst))
	before := inst.DeepCopy()
	allowed(t, "alice updates her instance", updateAs(alice, inst, func(i *slugwayv1.Instance) { i.Spec.URL = freshURL() }))
	allowed(t, "alice patches her instance", alice.Patch(ctx, inst, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"tier":"web"}}}`))))
	allowed(t, "alice deletes her instance", alice.Delete(ctx, before))
	// An empty owner is filled in for admins too, and nobody may claim on another's behalf but admins.
	denied(t, "mallory claims a slug for alice",
		mallory.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: objectMeta("", "gift-svc"), Spec: slugwayv1.ServiceAccountSpec{Owner: "alice"}}),
		`user "mallory" may not claim slug "gift-svc" for "alice"`, "leave spec.owner empty")
	allowed(t, "root claims a slug for bob",
		root.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: objectMeta("", "bobs-gift-svc"), Spec: slugwayv1.ServiceAccountSpec{Owner: "bob"}}))
	// Claims are first come, first served: the name is taken.
	err := mallory.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: objectMeta("", "claimed-svc")})
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("mallory claims alice's slug: %v, want AlreadyExists", err)
	}
}

// TestImpostorDeniedOnEveryWritePath tries each way of writing an Instance as a
// non-owner; every one must be refused with who, what and why, and alice's instance
// must come out unchanged.
//
// Both namespaces are the test's own: a deletecollection is refused for the first
// instance admission sees, so another test's instance there (of another slug) would be
// the one the message names.
func TestImpostorDeniedOnEveryWritePath(t *testing.T) {
	ctx := context.Background()
	alices, hers := namespace(t, "impostor-alice"), namespace(t, "impostor-mallory")
	inst := skeleton(t, alices, "skeleton-1")
	origURL := inst.Spec.URL
	evil := freshURL()
	key := client.ObjectKeyFromObject(inst)
	fresh := func() *slugwayv1.Instance {
		var got slugwayv1.Instance
		if err := mallory.Get(ctx, key, &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}
	heartbeat := []byte(fmt.Sprintf(`{"status":{"lastHeartbeat":%q}}`, time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")))

	cases := []struct {
		name string
		do   func() error
		want []string
	}{
		{"create in her own namespace", func() error {
			return mallory.Create(ctx, instance(hers, "hijack", "skeleton-svc", evil))
		}, []string{notAlices, "may create instance " + hers + "/hijack", `"slugway:admins"`}},
		{"create in the owner's namespace", func() error {
			return mallory.Create(ctx, instance(alices, "hijack", "skeleton-svc", evil))
		}, []string{notAlices, "may create instance " + alices + "/hijack"}},
		{"update", func() error {
			return updateAs(mallory, fresh(), func(i *slugwayv1.Instance) { i.Spec.URL = evil })
		}, []string{notAlices, "may update instance " + alices + "/skeleton-1"}},
		{"update of metadata only", func() error {
			return updateAs(mallory, fresh(), func(i *slugwayv1.Instance) { i.Labels = map[string]string{"pwned": "yes"} })
		}, []string{notAlices, "may update"}},
		{"merge patch", func() error {
			return mallory.Patch(ctx, fresh(), client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"url":%q}}`, evil))))
		}, []string{notAlices, "may update"}},
		{"JSON patch", func() error {
			return mallory.Patch(ctx, fresh(), client.RawPatch(types.JSONPatchType, []byte(fmt.Sprintf(`[{"op":"replace","path":"/spec/url","value":%q}]`, evil))))
		}, []string{notAlices, "may update"}},
		{"server-side apply", func() error {
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "slugway.io/v1alpha1", "kind": "Instance",
				"metadata": map[string]any{"name": "skeleton-1", "namespace": alices},
				"spec":     map[string]any{"slug": "skeleton-svc", "url": evil},
			}}
			return mallory.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("mallory"), client.ForceOwnership)
		}, []string{notAlices, "may update"}},
		{"server-side apply creating a new instance", func() error {
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "slugway.io/v1alpha1", "kind": "Instance",
				"metadata": map[string]any{"name": "applied", "namespace": hers},
				"spec":     map[string]any{"slug": "skeleton-svc", "url": evil},
			}}
			return mallory.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("mallory"))
		}, []string{notAlices, "may create"}},
		{"status update", func() error {
			return updateStatusAs(mallory, fresh(), func(i *slugwayv1.Instance) { i.Status.Status = slugwayv1.HealthHealthy })
		}, []string{notAlices, "may write the status of instance " + alices + "/skeleton-1"}},
		{"status merge patch of the heartbeat", func() error {
			return mallory.Status().Patch(ctx, fresh(), client.RawPatch(types.MergePatchType, heartbeat))
		}, []string{notAlices, "may write the status of"}},
		{"status server-side apply", func() error {
			body := `{"apiVersion":"slugway.io/v1alpha1","kind":"Instance","metadata":{"name":"skeleton-1","namespace":"` + alices + `"},"status":{"status":"Healthy"}}`
			return mallory.Status().Patch(ctx, fresh(), client.RawPatch(types.ApplyPatchType, []byte(body)), client.FieldOwner("mallory"), client.ForceOwnership)
		}, []string{notAlices, "may write the status of"}},
		{"delete", func() error {
			return mallory.Delete(ctx, fresh())
		}, []string{notAlices, "may delete instance " + alices + "/skeleton-1"}},
		{"deletecollection", func() error {
			return mallory.DeleteAllOf(ctx, &slugwayv1.Instance{}, client.InNamespace(alices))
		}, []string{notAlices, "may delete"}},
		{"deletecollection by field selector", func() error {
			return mallory.DeleteAllOf(ctx, &slugwayv1.Instance{}, client.InNamespace(alices), client.MatchingFields{"metadata.name": "skeleton-1"})
		}, []string{notAlices, "may delete"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			denied(t, "mallory: "+tc.name, err, tc.want...)
			if !apierrors.IsForbidden(err) {
				t.Errorf("want 403 Forbidden, got %v", err)
			}
		})
	}

	var after slugwayv1.Instance
	if err := env.Client.Get(ctx, key, &after); err != nil {
		t.Fatalf("alice's instance is gone after mallory's attempts: %v", err)
	}
	if after.Spec.URL != origURL || after.Labels["pwned"] != "" || !after.DeletionTimestamp.IsZero() {
		t.Fatalf("alice's instance changed: url %q labels %v deletion %v", after.Spec.URL, after.Labels, after.DeletionTimestamp)
	}
	var list slugwayv1.InstanceList
	if err := env.Client.List(ctx, &list, client.InNamespace(hers)); err != nil {
		t.Fatal(err)
	}
	for _, i := range list.Items {
		if i.Spec.Slug == "skeleton-svc" {
			t.Fatalf("mallory planted %s/%s under skeleton-svc", i.Namespace, i.Name)
		}
	}
}

// TestOwnerMayOnlyRenewHeartbeat: on the status subresource the owner may write
// lastHeartbeat (push-mode health) and nothing else; health is the controller's word.
func TestOwnerMayOnlyRenewHeartbeat(t *testing.T) {
	ctx := context.Background()
	inst := skeleton(t, "team-a", "skeleton-hb")
	reconciled(t, inst)
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	allowed(t, "alice renews her heartbeat", alice.Status().Patch(ctx, inst,
		client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"status":{"lastHeartbeat":%q}}`, now)))))
	for name, patch := range map[string]string{
		"status":               `{"status":{"status":"Healthy"}}`,
		"observedGeneration":   `{"status":{"observedGeneration":99}}`,
		"conditions":           `{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Forged","message":"","lastTransitionTime":"2020-01-01T00:00:00Z"}]}}`,
		"heartbeat and status": fmt.Sprintf(`{"status":{"lastHeartbeat":%q,"status":"Healthy"}}`, now),
	} {
		denied(t, "alice writes status."+name, alice.Status().Patch(ctx, inst, client.RawPatch(types.MergePatchType, []byte(patch))),
			`user "alice" may only renew status.lastHeartbeat of instance team-a/skeleton-hb`, "written by the slugway controller")
	}
	// The spec cannot be changed through the status subresource, by anyone: the apiserver drops it.
	var got slugwayv1.Instance
	if err := alice.Get(ctx, client.ObjectKeyFromObject(inst), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Status == slugwayv1.HealthHealthy {
		t.Fatalf("status became Healthy though nothing listens at %s", got.Spec.URL)
	}
}

func TestAdminGroupMayChangeAnySlug(t *testing.T) {
	ctx := context.Background()
	inst := skeleton(t, "team-a", "skeleton-admin")
	allowed(t, "root updates alice's instance", updateAs(root, inst, func(i *slugwayv1.Instance) { i.Spec.URL = freshURL() }))
	allowed(t, "root patches it", root.Patch(ctx, inst, client.RawPatch(types.JSONPatchType, []byte(`[{"op":"add","path":"/metadata/labels","value":{"by":"root"}}]`))))
	allowed(t, "root writes its status", root.Status().Patch(ctx, inst, client.RawPatch(types.MergePatchType, []byte(`{"status":{"status":"Unknown"}}`))))
	allowed(t, "root creates an instance of alice's slug", root.Create(ctx, instance("team-b", "by-root", "skeleton-svc", freshURL())))
	allowed(t, "root deletes alice's instance", root.Delete(ctx, inst))
	allowed(t, "root deletes by collection", root.DeleteAllOf(ctx, &slugwayv1.Instance{}, client.InNamespace("team-b"), client.MatchingFields{"metadata.name": "by-root"}))
}

func TestUnclaimedSlugDenied(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		who string
		c   client.Client
	}{{"alice", alice}, {"root", root}} {
		denied(t, c.who+" pre-plants an instance for an unclaimed slug",
			c.c.Create(ctx, instance("team-a", "early", "nobody-svc", freshURL())),
			`slug "nobody-svc" is not claimed`, `create the ServiceAccount "nobody-svc"`)
	}
}

func TestServiceAccountOwnership(t *testing.T) {
	ctx := context.Background()
	sa := claim(t, alice, "owned-svc")
	get := func(c client.Client) *slugwayv1.ServiceAccount {
		var got slugwayv1.ServiceAccount
		if err := c.Get(ctx, client.ObjectKeyFromObject(sa), &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}
	notOwner := `user "mallory" does not own slug "owned-svc" (owner "alice")`

	denied(t, "mallory updates alice's slug", updateAs(mallory, get(mallory), func(s *slugwayv1.ServiceAccount) { s.Spec.DisplayName = "pwned" }),
		notOwner, `may update slug "owned-svc"`)
	denied(t, "mallory takes alice's slug", updateAs(mallory, get(mallory), func(s *slugwayv1.ServiceAccount) { s.Spec.Owner = "mallory" }), notOwner)
	denied(t, "mallory patches alice's slug", mallory.Patch(ctx, get(mallory), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"owner":"mallory"}}`))), notOwner)
	denied(t, "mallory deletes alice's slug", mallory.Delete(ctx, get(mallory)), notOwner, "may delete")
	denied(t, "mallory writes the slug's status", mallory.Status().Patch(ctx, get(mallory), client.RawPatch(types.MergePatchType, []byte(`{"status":{"instances":7}}`))), `may not write the status of slug "owned-svc"`)

	allowed(t, "alice updates her slug's display name", updateAs(alice, get(alice), func(s *slugwayv1.ServiceAccount) { s.Spec.DisplayName = "Owned Service" }))
	denied(t, "alice writes her slug's status", alice.Status().Patch(ctx, get(alice), client.RawPatch(types.MergePatchType, []byte(`{"status":{"instances":7}}`))),
		`user "alice" may not write the status of slug "owned-svc"`, "written by the slugway controller")
	denied(t, "alice gives her slug to mallory", alice.Patch(ctx, get(alice), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"owner":"mallory"}}`))),
		`user "alice" may not change spec.owner of slug "owned-svc" from "alice" to "mallory"`, "only members of", `"slugway:admins"`)
	denied(t, "alice strips the instances finalizer", alice.Patch(ctx, get(alice), client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/metadata/finalizers","value":[]}]`))),
		`may not remove the finalizer "slugway.io/instances"`, "does not inherit them")

	allowed(t, "root transfers the slug to bob", root.Patch(ctx, get(root), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"owner":"bob"}}`))))
	denied(t, "alice, no longer the owner, adds an instance", alice.Create(ctx, instance("team-a", "owned-1", "owned-svc", freshURL())),
		`user "alice" does not own slug "owned-svc" (owner "bob")`)
	allowed(t, "bob adds an instance", bob.Create(ctx, instance("team-b", "owned-1", "owned-svc", freshURL())))
}

func TestReservedSlugsRefused(t *testing.T) {
	ctx := context.Background()
	for _, slug := range []string{"healthz", "readyz", "metrics", "slugway"} {
		for who, c := range map[string]client.Client{"alice": alice, "root": root} {
			denied(t, who+" claims "+slug, c.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: objectMeta("", slug)}),
				fmt.Sprintf("slug %q is reserved", slug), "pick another name")
		}
	}
}

// TestMovingAnInstance: neither changing spec.slug nor recreating an instance elsewhere
// lets anyone route a slug they do not own.
func TestMovingAnInstance(t *testing.T) {
	ctx := context.Background()
	victim := skeleton(t, "team-a", "skeleton-move")
	claim(t, mallory, "mallory-svc")
	mine := instance("team-b", "mover", "mallory-svc", freshURL())
	mustCreate(t, mallory, mine)

	denied(t, "mallory moves her instance into alice's slug", updateAs(mallory, mine.DeepCopy(), func(i *slugwayv1.Instance) { i.Spec.Slug = "skeleton-svc" }), "spec.slug is immutable", "delete the Instance and create a new one")
	denied(t, "mallory moves it with a JSON patch", mallory.Patch(ctx, instance("team-b", "mover", "", ""),
		client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/slug","value":"skeleton-svc"}]`))), "spec.slug is immutable")
	denied(t, "even the owner cannot move an instance to another slug", updateAs(alice, victim, func(i *slugwayv1.Instance) { i.Spec.Slug = "mallory-svc" }), "spec.slug is immutable")

	allowed(t, "mallory deletes her instance", mallory.Delete(ctx, instance("team-b", "mover", "", "")))
	denied(t, "mallory recreates it under alice's slug", mallory.Create(ctx, instance("team-b", "mover", "skeleton-svc", mine.Spec.URL)), notAlices)
	denied(t, "mallory recreates it in alice's namespace", mallory.Create(ctx, instance("team-a", "mover", "skeleton-svc", mine.Spec.URL)), notAlices)
	moved := instance("team-b", "skeleton-move", "skeleton-svc", freshURL())
	allowed(t, "alice recreates her instance in another namespace", alice.Create(ctx, moved))
	deleteAtCleanup(t, moved)
}

// TestURLConflict: one URL belongs to one slug; a second slug cannot register it, in any spelling.
func TestURLConflict(t *testing.T) {
	ctx := context.Background()
	claim(t, alice, "url-a-svc")
	claim(t, bob, "url-b-svc")
	url := freshURL() // http://127.0.0.1:N/
	held := instance("team-a", "holder", "url-a-svc", url)
	mustCreate(t, alice, held)
	reconciled(t, held)

	want := []string{"is already served by instance team-a/holder of slug \"url-a-svc\"", "one URL belongs to one slug"}
	denied(t, "bob registers alice's URL", bob.Create(ctx, instance("team-b", "taker", "url-b-svc", url)), want...)
	denied(t, "bob registers it without the trailing slash", bob.Create(ctx, instance("team-b", "taker", "url-b-svc", url[:len(url)-1])), want...)
	mine := instance("team-b", "taker", "url-b-svc", freshURL())
	mustCreate(t, bob, mine)
	denied(t, "bob switches his instance to alice's URL", updateAs(bob, mine, func(i *slugwayv1.Instance) { i.Spec.URL = url }), want...)
	denied(t, "even an admin cannot register a held URL under another slug", root.Create(ctx, instance("team-b", "taker-2", "url-b-svc", url)), want...)
	allowed(t, "alice registers the same URL again under her own slug", alice.Create(ctx, instance("team-b", "holder-2", "url-a-svc", url)))
}

// TestURLConflictInEverySpelling: each alias of a held URL that issue #14 found
// admitted for a second slug (and became Owned there) is refused, with a message
// naming the holder and the canonical form both spellings share; ".." is refused outright.
func TestURLConflictInEverySpelling(t *testing.T) {
	ctx := context.Background()
	claim(t, alice, "alias-a-svc")
	claim(t, bob, "alias-b-svc")
	n := 20000 + int(port.Add(1))
	ip := fmt.Sprintf("http://127.0.0.1:%d", n)
	name := fmt.Sprintf("http://skeleton.alias.test:%d/api", n)
	for i, u := range []string{ip, name} {
		held := instance("team-a", fmt.Sprintf("alias-holder-%d", i), "alias-a-svc", u)
		mustCreate(t, alice, held)
		reconciled(t, held)
	}
	for i, c := range []struct{ spelling, key string }{
		{ip + "//", ip},
		{fmt.Sprintf("http://127.0.0.1:0%d", n), ip},
		{fmt.Sprintf("http://[::ffff:127.0.0.1]:%d", n), ip},
		{fmt.Sprintf("http://[::127.0.0.1]:%d", n), ip},
		{ip + "/.", ip},
		{fmt.Sprintf("http://127.1:%d/", n), ip},
		{fmt.Sprintf("http://skeleton.alias.test.:%d/api", n), name},
		{fmt.Sprintf("HTTP://Skeleton.Alias.Test:%d//api/./", n), name},
	} {
		denied(t, "bob registers "+c.spelling, bob.Create(ctx, instance("team-b", fmt.Sprintf("alias-taker-%d", i), "alias-b-svc", c.spelling)),
			`is already served by instance team-a/alias-holder-`, `of slug "alias-a-svc"`, "(both are "+c.key+")", "one URL belongs to one slug")
	}
	denied(t, "bob registers a path with ..", bob.Create(ctx, instance("team-b", "alias-dotdot", "alias-b-svc", name+"/../api")),
		`has no canonical form`, `".." segment`)
	// An alias of her own URL is fine for alice: one slug may list an endpoint twice.
	allowed(t, "alice registers an alias of her own URL", alice.Create(ctx, instance("team-b", "alias-holder-again", "alias-a-svc", ip+"//")))
}

// TestReleasedSlugIsNotInherited: deleting a ServiceAccount deletes its instances (the
// finalizer), so whoever claims the slug next starts with none of the old owner's routes.
func TestReleasedSlugIsNotInherited(t *testing.T) {
	ctx := context.Background()
	sa := claim(t, alice, "release-svc")
	inst := instance("team-a", "released-1", "release-svc", freshURL())
	mustCreate(t, alice, inst)
	reconciled(t, inst)
	allowed(t, "alice releases her slug", alice.Delete(ctx, sa))
	// While the release runs, no instance may be added that could outlive it.
	denied(t, "alice adds an instance during the release", alice.Create(ctx, instance("team-a", "late", "release-svc", freshURL())), `slug "release-svc"`)
	testenv.Eventually(t, 15*time.Second, func(ctx context.Context) error {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(sa), &slugwayv1.ServiceAccount{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("slug release-svc still exists")
		}
		return err
	})
	claim(t, mallory, "release-svc")
	var list slugwayv1.InstanceList
	if err := env.Client.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	for _, i := range list.Items {
		if i.Spec.Slug == "release-svc" {
			t.Fatalf("mallory's new slug inherited %s/%s (url %s) from alice", i.Namespace, i.Name, i.Spec.URL)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
