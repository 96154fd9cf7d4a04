package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/sdk"
)

func getInstance(ctx context.Context, key types.NamespacedName) (*slugwayv1.Instance, error) {
	var inst slugwayv1.Instance
	return &inst, env.Client.Get(ctx, key, &inst)
}

func instancesOf(t *testing.T, slug string) []slugwayv1.Instance {
	t.Helper()
	var list slugwayv1.InstanceList
	if err := env.Client.List(context.Background(), &list, client.MatchingLabels{sdk.LabelSlug: slug}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func waitStatus(t *testing.T, key types.NamespacedName, want slugwayv1.Health, timeout time.Duration) *slugwayv1.Instance {
	t.Helper()
	var inst *slugwayv1.Instance
	testenv.Eventually(t, timeout, func(ctx context.Context) (err error) {
		if inst, err = getInstance(ctx, key); err != nil {
			return err
		}
		if inst.Status.Status != want {
			return fmt.Errorf("status %q, want %q (conditions %+v)", inst.Status.Status, want, inst.Status.Conditions)
		}
		return nil
	})
	return inst
}

// The first identity claims the slug; the second's claim fails with the typed error,
// and the webhook denies its attempt to register an Instance under that slug anyway.
func TestSecondIdentityCannotTakeTheSlug(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, bob := user(t, "alice"), user(t, "bob")

	reg, err := sdk.Register(ctx, sdk.Options{Slug: "contested", DisplayName: "Contested", URL: serve(t), Namespace: "default", Config: alice})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Close(ctx) }()
	if reg.User() != "alice" {
		t.Fatalf("registration acts as %q, want alice", reg.User())
	}
	var sa slugwayv1.ServiceAccount
	if err := env.Client.Get(ctx, types.NamespacedName{Name: "contested"}, &sa); err != nil {
		t.Fatal(err)
	}
	if sa.Spec.Owner != "alice" || sa.Spec.DisplayName != "Contested" {
		t.Fatalf("slug spec %+v, want owner alice and display name Contested", sa.Spec)
	}

	bobURL := serve(t)
	_, err = sdk.Register(ctx, sdk.Options{Slug: "contested", URL: bobURL, Namespace: "default", Config: bob})
	var owned *sdk.SlugOwnedError
	if !errors.As(err, &owned) {
		t.Fatalf("bob's Register: got %v (%T), want *sdk.SlugOwnedError", err, err)
	}
	if owned.Slug != "contested" || owned.Owner != "alice" || owned.User != "bob" {
		t.Fatalf("SlugOwnedError %+v", owned)
	}
	if !strings.HasPrefix(err.Error(), `slug "contested" is owned by "alice"`) {
		t.Fatalf("message %q does not start with the slug and its owner", err.Error())
	}
	if ctx.Err() != nil {
		t.Fatal("a permanent error must be returned at once, not retried until the context ends")
	}
	if n := len(instancesOf(t, "contested")); n != 1 {
		t.Fatalf("%d instances of contested after bob's failed claim, want alice's only", n)
	}

	// Bob goes around the SDK: the webhook refuses.
	bobClient, err := client.New(bob, client.Options{Scheme: kubeclient.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	inst := &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Name: "contested-bob", Namespace: "default"},
		Spec:       slugwayv1.InstanceSpec{Slug: "contested", URL: bobURL},
	}
	err = bobClient.Create(ctx, inst)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `does not own slug "contested"`) {
		t.Fatalf("bob creating an instance of alice's slug: got %v, want Forbidden by the ownership webhook", err)
	}
	// Nor may he renew alice's heartbeat.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"status":{"lastHeartbeat":"2030-01-01T00:00:00Z"}}`))
	theirs := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Name: reg.Instance().Name, Namespace: "default"}}
	if err := bobClient.Status().Patch(ctx, theirs, patch); !apierrors.IsForbidden(err) {
		t.Fatalf("bob renewing alice's heartbeat: got %v, want Forbidden", err)
	}
}

// Two identities racing for a fresh slug: one wins, the other is told who won.
func TestConcurrentClaimsHaveOneWinner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		name string
		reg  *sdk.Registration
		err  error
	}
	results := make(chan result, 2)
	for _, name := range []string{"carol", "dave"} {
		o := sdk.Options{Slug: "raced", URL: serve(t), Namespace: "default", Config: user(t, name)}
		go func() {
			reg, err := sdk.Register(ctx, o)
			results <- result{name, reg, err}
		}()
	}
	var winners, losers []string
	for range 2 {
		r := <-results
		var owned *sdk.SlugOwnedError
		switch {
		case r.err == nil:
			winners = append(winners, r.name)
			defer func() { _ = r.reg.Close(ctx) }()
		case errors.As(r.err, &owned):
			losers = append(losers, r.name+"->"+owned.Owner)
		default:
			t.Fatalf("%s: %v", r.name, r.err)
		}
	}
	if len(winners) != 1 || len(losers) != 1 || !strings.HasSuffix(losers[0], "->"+winners[0]) {
		t.Fatalf("winners %v, losers %v: want one winner and the loser told its name", winners, losers)
	}
}

// Registering twice from the same pod (a restart: the first process died without
// deregistering) leaves one Instance, updated in place; an unchanged re-registration
// writes nothing.
func TestReRegistrationIsIdempotentAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := user(t, "alice")
	pod := makePod(t, "idem-7f9c-x2")
	url := serve(t)
	opts := sdk.Options{Slug: "idem", URL: url, Namespace: "default", PodName: pod.Name, PodUID: pod.UID, Config: alice}

	first, err := sdk.Register(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	first.Stop() // the process crashes: no deregistration
	if want := "idem-idem-7f9c-x2"; first.Instance().Name != want {
		t.Fatalf("instance name %q, want %q", first.Instance().Name, want)
	}
	before, err := getInstance(ctx, first.Instance())
	if err != nil {
		t.Fatal(err)
	}

	// The restarted process registers again, now with another health check path.
	opts.HealthCheck = slugwayv1.HealthCheck{Path: "/ready"}
	second, err := sdk.Register(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = second.Close(ctx) }()
	items := instancesOf(t, "idem")
	if len(items) != 1 {
		t.Fatalf("%d instances after re-registration, want 1", len(items))
	}
	if items[0].UID != before.UID || second.Instance() != first.Instance() {
		t.Fatalf("re-registration replaced the instance (uid %s -> %s)", before.UID, items[0].UID)
	}
	if items[0].Spec.HealthCheck.Path != "/ready" {
		t.Fatalf("health check path %q: re-registration did not update the instance", items[0].Spec.HealthCheck.Path)
	}
	second.Stop()

	// Once more, unchanged: no write at all.
	third, err := sdk.Register(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Stop()
	after, err := getInstance(ctx, third.Instance())
	if err != nil {
		t.Fatal(err)
	}
	if after.Spec.HealthCheck.Path != "/ready" || after.Generation != items[0].Generation {
		t.Fatalf("unchanged re-registration changed the spec (generation %d -> %d)", items[0].Generation, after.Generation)
	}
}

// Without a pod the name comes from the URL: the same URL, however it is spelled,
// gives the same Instance.
func TestReRegistrationWithoutPodUsesURLHash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := user(t, "alice")
	url := serve(t)
	var regs []*sdk.Registration
	for _, u := range []string{url, url + "/", strings.Replace(url, "http://", "HTTP://", 1)} {
		reg, err := sdk.Register(ctx, sdk.Options{Slug: "nopod", URL: u, Namespace: "default", Config: alice})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		reg.Stop()
		regs = append(regs, reg)
	}
	if !regexp.MustCompile(`^nopod-[0-9a-f]{10}$`).MatchString(regs[0].Instance().Name) {
		t.Fatalf("instance name %q, want nopod-<10 hex digits>", regs[0].Instance().Name)
	}
	if items := instancesOf(t, "nopod"); len(items) != 1 {
		t.Fatalf("%d instances, want 1", len(items))
	}
	if len(instancesOf(t, "nopod")[0].OwnerReferences) != 0 {
		t.Fatal("an instance registered without a pod must have no ownerReference")
	}
	if err := regs[0].Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// The Instance points at its Pod, so that garbage collection deletes it with the pod.
func TestOwnerReferenceToPod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod := makePod(t, "owned-pod")
	t.Setenv(sdk.EnvPodName, pod.Name)
	t.Setenv(sdk.EnvPodUID, string(pod.UID))
	t.Setenv(sdk.EnvPodNamespace, "default")
	t.Setenv(sdk.EnvSelfURL, serve(t))
	reg, err := sdk.Register(ctx, sdk.Options{Slug: "owned", Config: user(t, "alice")}) // the rest from the downward-API env
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Close(ctx) }()
	inst, err := getInstance(ctx, reg.Instance())
	if err != nil {
		t.Fatal(err)
	}
	if len(inst.OwnerReferences) != 1 {
		t.Fatalf("ownerReferences %+v, want one to the pod", inst.OwnerReferences)
	}
	ref := inst.OwnerReferences[0]
	if ref.APIVersion != "v1" || ref.Kind != "Pod" || ref.Name != pod.Name || ref.UID != pod.UID {
		t.Fatalf("ownerReference %+v, want v1 Pod %s uid %s", ref, pod.Name, pod.UID)
	}
	if ref.BlockOwnerDeletion == nil || *ref.BlockOwnerDeletion {
		t.Fatal("blockOwnerDeletion must be false: a service may not hold up its pod's deletion")
	}
	if inst.Namespace != "default" || inst.Name != "owned-owned-pod" || inst.Spec.URL != reg.URL() {
		t.Fatalf("instance %s/%s url %s: the env was not used", inst.Namespace, inst.Name, inst.Spec.URL)
	}
	// The controller probes it (http mode, /healthz) and finds it healthy.
	waitStatus(t, reg.Instance(), slugwayv1.HealthHealthy, 15*time.Second)
}

var heartbeatBody = regexp.MustCompile(`^\{"status":\{"lastHeartbeat":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"\}\}$`)

// In heartbeat mode the SDK keeps the instance Healthy with one small status patch
// per renewal; once it stops, the instance turns Unreachable after the TTL.
func TestHeartbeatKeepsInstanceHealthyUntilStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ttl = 2 * time.Second
	rec := &recorder{}
	// Nothing listens at this URL: only the heartbeat can make it Healthy.
	reg, err := sdk.Register(ctx, sdk.Options{Slug: "beat", URL: "http://127.0.0.1:9/nothing", Namespace: "default",
		HealthCheck: sdk.Heartbeat(ttl), Config: rec.wrap(user(t, "alice"))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Close(ctx) }()
	waitStatus(t, reg.Instance(), slugwayv1.HealthHealthy, 5*time.Second)

	mark := rec.count()
	first, _ := getInstance(ctx, reg.Instance())
	// Watch for longer than the TTL: it must stay Healthy throughout.
	end := time.Now().Add(ttl + 1500*time.Millisecond)
	for time.Now().Before(end) {
		inst, err := getInstance(ctx, reg.Instance())
		if err != nil {
			t.Fatal(err)
		}
		if inst.Status.Status != slugwayv1.HealthHealthy {
			t.Fatalf("heartbeat-mode instance turned %s while the SDK was renewing: %+v", inst.Status.Status, inst.Status.Conditions)
		}
		time.Sleep(100 * time.Millisecond)
	}
	last, _ := getInstance(ctx, reg.Instance())
	if !last.Status.LastHeartbeat.After(first.Status.LastHeartbeat.Time) {
		t.Fatalf("lastHeartbeat did not advance: %v then %v", first.Status.LastHeartbeat, last.Status.LastHeartbeat)
	}

	// Each renewal is a single merge patch of the status subresource holding only
	// lastHeartbeat: no GET, no PUT, no full object.
	reqs := rec.since(mark)
	statusPath := fmt.Sprintf("/apis/slugway.io/v1alpha1/namespaces/default/instances/%s/status", reg.Instance().Name)
	if len(reqs) < 4 { // 3.5s at ttl/3 ± 10%
		t.Fatalf("only %d requests in %s: %+v", len(reqs), ttl+1500*time.Millisecond, reqs)
	}
	for _, r := range reqs {
		if r.Method != "PATCH" || r.Path != statusPath || r.ContentType != "application/merge-patch+json" || !heartbeatBody.MatchString(r.Body) {
			t.Fatalf("renewal request %+v: want PATCH %s, application/merge-patch+json, body {\"status\":{\"lastHeartbeat\":...}}", r, statusPath)
		}
	}

	reg.Stop()
	stopped := time.Now()
	inst := waitStatus(t, reg.Instance(), slugwayv1.HealthUnreachable, ttl+10*time.Second)
	if since := time.Since(stopped); since < ttl-time.Second {
		t.Fatalf("Unreachable %s after the last renewal, before the TTL of %s could pass", since, ttl)
	}
	t.Logf("Unreachable %s after the heartbeat stopped (ttl %s): %+v", time.Since(stopped).Round(10*time.Millisecond), ttl, inst.Status.Conditions)
}

// Close deletes the Instance, and nothing brings it back.
func TestCloseDeregisters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := sdk.Register(ctx, sdk.Options{Slug: "closing", URL: serve(t), Namespace: "default", Resync: 100 * time.Millisecond, Config: user(t, "alice")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := getInstance(ctx, reg.Instance()); err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := getInstance(ctx, reg.Instance()); !apierrors.IsNotFound(err) {
		t.Fatalf("after Close: %v, want NotFound", err)
	}
	time.Sleep(500 * time.Millisecond) // five resync periods
	if _, err := getInstance(ctx, reg.Instance()); !apierrors.IsNotFound(err) {
		t.Fatalf("instance came back after Close: %v", err)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var sa slugwayv1.ServiceAccount
	if err := env.Client.Get(ctx, types.NamespacedName{Name: "closing"}, &sa); err != nil {
		t.Fatalf("Close must keep the slug claimed: %v", err)
	}
}

// An Instance deleted behind the SDK's back (expired, deleted by hand) is registered again.
func TestDeletedInstanceIsRegisteredAgain(t *testing.T) {
	for _, mode := range []struct {
		name string
		hc   slugwayv1.HealthCheck
	}{{"probe", slugwayv1.HealthCheck{}}, {"heartbeat", sdk.Heartbeat(3 * time.Second)}} {
		t.Run(mode.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			reg, err := sdk.Register(ctx, sdk.Options{Slug: "phoenix-" + mode.name, URL: serve(t), Namespace: "default", HealthCheck: mode.hc,
				Resync: 100 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond, Config: user(t, "alice")})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = reg.Close(ctx) }()
			old, err := getInstance(ctx, reg.Instance())
			if err != nil {
				t.Fatal(err)
			}
			if err := env.Client.Delete(ctx, old); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
				inst, err := getInstance(ctx, reg.Instance())
				if err != nil {
					return err
				}
				if inst.UID == old.UID {
					return errors.New("still the old instance")
				}
				return nil
			})
		})
	}
}

// Connection failures are retried with backoff, during Register and during heartbeats.
func TestTransientFailuresAreRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := &recorder{}
	rec.fail(4)
	reg, err := sdk.Register(ctx, sdk.Options{Slug: "flaky", URL: serve(t), Namespace: "default",
		HealthCheck: sdk.Heartbeat(3 * time.Second), HeartbeatInterval: 200 * time.Millisecond,
		RetryInitialDelay: 10 * time.Millisecond, Config: rec.wrap(user(t, "alice"))})
	if err != nil {
		t.Fatalf("Register gave up on transient failures: %v", err)
	}
	defer func() { _ = reg.Close(ctx) }()
	rec.mu.Lock()
	failed := rec.failed
	rec.mu.Unlock()
	if failed != 4 {
		t.Fatalf("%d injected failures consumed, want 4", failed)
	}
	waitStatus(t, reg.Instance(), slugwayv1.HealthHealthy, 5*time.Second)

	// Break the next three renewals; the registration must survive them.
	rec.fail(3)
	mark := rec.count()
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.failNext > 0 || len(rec.reqs) < mark+4 {
			return fmt.Errorf("%d failures pending, %d requests since", rec.failNext, len(rec.reqs)-mark)
		}
		return nil
	})
	waitStatus(t, reg.Instance(), slugwayv1.HealthHealthy, 5*time.Second)
}

// Refusals are returned at once, with the apiserver's reason.
func TestPermanentErrorsAreReturnedAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := user(t, "alice")

	_, err := sdk.Register(ctx, sdk.Options{Slug: "badurl", URL: "ftp://example.invalid/x", Namespace: "default", Config: alice})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "http:// or https://") {
		t.Fatalf("ftp URL: got %v, want Invalid from the CRD's validation", err)
	}
	_, err = sdk.Register(ctx, sdk.Options{Slug: "healthz", URL: serve(t), Namespace: "default", Config: alice})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("reserved slug: got %v, want Forbidden by the webhook", err)
	}
	_, err = sdk.Register(ctx, sdk.Options{Slug: "Not_A_Slug", URL: serve(t), Config: alice})
	if err == nil || !strings.Contains(err.Error(), "lowercase DNS label") {
		t.Fatalf("bad slug: got %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("permanent errors were retried until the context ended")
	}
}

// BenchmarkReRegister is the cost of a restart's Register against a real apiserver
// with webhooks: SelfSubjectReview, slug read, Instance read and a no-op update.
func BenchmarkReRegister(b *testing.B) {
	ctx := context.Background()
	cfg, err := env.User("bench")
	if err != nil {
		b.Fatal(err)
	}
	opts := sdk.Options{Slug: "bench", URL: "http://127.0.0.1:9/bench", Namespace: "default", HealthCheck: sdk.Heartbeat(time.Minute), Config: cfg}
	reg, err := sdk.Register(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	reg.Stop()
	b.ResetTimer()
	for b.Loop() {
		reg, err := sdk.Register(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		reg.Stop()
	}
	b.StopTimer()
	_ = reg.Close(ctx)
}
