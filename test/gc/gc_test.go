// Package gc shows that Kubernetes' garbage collector removes an SDK-registered
// Instance when its Pod is deleted. envtest runs no controllers, so this test starts
// the real kube-controller-manager (bin/k8s-<version>/, built by hack/controlplane.sh)
// as a process, with only its garbage collector, against envtest's apiserver.
package gc

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/sdk"
	"github.com/slugway/slugway/webhooks"
)

// startGC runs kube-controller-manager's garbage collector as user, which must be
// allowed by RBAC to list, watch and delete everything.
func startGC(t *testing.T, env *testenv.Env, user string) {
	t.Helper()
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no kube-controller-manager in %s: run `make controlplane` (hack/controlplane.sh) first", assets)
	}
	au, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := au.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kcm.kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--kubeconfig="+path,
		"--controllers=garbagecollector",
		"--leader-elect=false",
		"--use-service-account-credentials=false", // act as the kubeconfig's user
		"--secure-port=0",                         // serve nothing
	)
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kube-controller-manager output:\n%s", out)
		}
	})
}

func TestGarbageCollectorDeletesInstanceWithItsPod(t *testing.T) {
	env, err := testenv.Start(true)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the kube-controller-manager started below goes
	// first, so the apiserver has no open watches to drain when it stops.
	t.Cleanup(func() { _ = env.Stop() })
	stopController, err := env.StartController(env.ControllerOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopController)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := env.GrantSlugwayAccess(ctx); err != nil {
		t.Fatal(err)
	}

	// The garbage collector runs as kube-controller-manager's own user: not an admin
	// in slugway's eyes (no system:masters), so the webhook lets its deletes through
	// only because that name is in webhooks.DefaultDeleters. RBAC: cluster-admin.
	const gcUser = "system:kube-controller-manager"
	if !slices.Contains(webhooks.DefaultDeleters, gcUser) {
		t.Fatalf("%s is not in webhooks.DefaultDeleters %v", gcUser, webhooks.DefaultDeleters)
	}
	if err := env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-kcm-cluster-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: gcUser}},
	}); err != nil {
		t.Fatal(err)
	}
	startGC(t, env, gcUser)

	alice, err := env.User("alice")
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]*corev1.Pod{}
	regs := map[string]*sdk.Registration{}
	for _, name := range []string{"doomed-0", "survivor-0"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec:       corev1.PodSpec{AutomountServiceAccountToken: new(false), Containers: []corev1.Container{{Name: "svc", Image: "svc:dev"}}},
		}
		if err := env.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pods[name] = pod
		// Heartbeat mode: no probe needed, and the URL need not answer.
		reg, err := sdk.Register(ctx, sdk.Options{Slug: "gc-svc", URL: "http://127.0.0.1:9/" + name, Namespace: "default",
			PodName: pod.Name, PodUID: pod.UID, HealthCheck: sdk.Heartbeat(time.Minute), Config: alice})
		if err != nil {
			t.Fatal(err)
		}
		reg.Stop() // the service dies without deregistering: only the garbage collector can clean up
		regs[name] = reg
	}

	// An unscheduled pod is deleted at once (no kubelet needs to confirm).
	if err := env.Client.Delete(ctx, pods["doomed-0"]); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for {
		err := env.Client.Get(ctx, regs["doomed-0"].Instance(), &slugwayv1.Instance{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("instance %s still there %s after its pod was deleted (last get: %v)", regs["doomed-0"].Instance(), time.Since(deleted).Round(time.Second), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("garbage collector deleted the instance %s after its pod was deleted", time.Since(deleted).Round(10*time.Millisecond))

	// The other pod lives, and so does its instance.
	if err := env.Client.Get(ctx, regs["survivor-0"].Instance(), &slugwayv1.Instance{}); err != nil {
		t.Fatalf("instance of the living pod: %v", err)
	}
}
