// Package anylanguage tests service.sh, a slugway service that registers itself with
// nothing but curl and the Kubernetes REST API, against a real kube-apiserver with
// slugway's webhooks and controller.
package anylanguage

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/freeport"
	"github.com/slugway/slugway/internal/testenv"
)

const (
	identity = "system:serviceaccount:default:any-language"
	slug     = "any-language"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	for _, tool := range []string{"bash", "curl", "python3", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "any-language tests need %s on PATH: %v\n", tool, err)
			os.Exit(1)
		}
	}
	testenv.Main(m, &env, testenv.Suite{Webhooks: true, Controller: true, Setup: func(ctx context.Context, _ *testenv.Env) error {
		return bindServiceRole(ctx, identity, "system:serviceaccount:default:intruder")
	}})
}

// bindServiceRole installs the slugway-service ClusterRole from config/rbac and binds
// the users to it: the script needs nothing more.
func bindServiceRole(ctx context.Context, users ...string) error {
	data, err := os.ReadFile(filepath.Join(env.Root, "config", "rbac", "service_role.yaml"))
	if err != nil {
		return err
	}
	var role unstructured.Unstructured
	if err := yaml.Unmarshal(data, &role.Object); err != nil {
		return err
	}
	if err := env.Client.Create(ctx, &role); err != nil {
		return err
	}
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "any-language-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.GetName()},
	}
	for _, u := range users {
		b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: u})
	}
	return env.Client.Create(ctx, b)
}

// creds writes a user's client certificate, key and the apiserver's CA to files for curl.
func creds(t *testing.T, user string) []string {
	t.Helper()
	cfg, err := env.User(user)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{"ca.crt": cfg.CAData, "tls.crt": cfg.CertData, "tls.key": cfg.KeyData}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return []string{
		"KUBE_API=" + strings.TrimSuffix(cfg.Host, "/"),
		"CA_FILE=" + filepath.Join(dir, "ca.crt"),
		"CLIENT_CERT=" + filepath.Join(dir, "tls.crt"),
		"CLIENT_KEY=" + filepath.Join(dir, "tls.key"),
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// script is a running service.sh.
type script struct {
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan error
}

func start(t *testing.T, envv ...string) *script {
	t.Helper()
	cmd := exec.Command("bash", "service.sh")
	cmd.Env = append(os.Environ(), envv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so a crash can take the listener too
	s := &script{cmd: cmd, out: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		t.Logf("service.sh output:\n%s", s.out)
	})
	return s
}

// crash kills the script and its listener without letting it deregister.
func (s *script) crash(t *testing.T) {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.done <- nil
}

func (s *script) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("service.sh still running after %s:\n%s", timeout, s.out)
		return nil
	}
}

func healthy(key types.NamespacedName, inst *slugwayv1.Instance) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := env.Client.Get(ctx, key, inst); err != nil {
			return err
		}
		if inst.Status.Status != slugwayv1.HealthHealthy {
			return fmt.Errorf("status %q %+v", inst.Status.Status, inst.Status.Conditions)
		}
		return nil
	}
}

// The script claims its slug, registers a heartbeat-mode Instance owned by its pod,
// stays Healthy by renewing the heartbeat, serves its API, survives a crash and
// restart without a duplicate, and deregisters on SIGTERM.
func TestScriptRegistersHeartbeatsAndDeregisters(t *testing.T) {
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "any-language-0", Namespace: "default"},
		Spec:       corev1.PodSpec{AutomountServiceAccountToken: new(false), Containers: []corev1.Container{{Name: "svc", Image: "any-language:dev"}}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	self := "http://127.0.0.1:" + port
	vars := append(creds(t, identity), "SELF_URL="+self, "LISTEN_PORT="+port, "TTL_SECONDS=2",
		"POD_NAME="+pod.Name, "POD_NAMESPACE=default", "POD_UID="+string(pod.UID))
	s := start(t, vars...)

	key := types.NamespacedName{Namespace: "default", Name: "any-language-any-language-0"}
	var inst slugwayv1.Instance
	testenv.Eventually(t, 15*time.Second, healthy(key, &inst))
	if inst.Spec.URL != self || inst.Spec.HealthCheck.Type != slugwayv1.HealthCheckHeartbeat || inst.Spec.HealthCheck.TTL.Duration != 2*time.Second {
		t.Fatalf("instance spec %+v", inst.Spec)
	}
	if refs := inst.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Pod" || refs[0].UID != pod.UID {
		t.Fatalf("ownerReferences %+v, want the pod", refs)
	}
	var sa slugwayv1.ServiceAccount
	if err := env.Client.Get(ctx, types.NamespacedName{Name: slug}, &sa); err != nil {
		t.Fatal(err)
	}
	if sa.Spec.Owner != identity || sa.Spec.DisplayName != "Any Language" {
		t.Fatalf("slug spec %+v: the webhook should have made the caller the owner", sa.Spec)
	}
	resp, err := http.Get(self + "/any-language/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(body) != `{"hello": "world"}` {
		t.Fatalf("hello: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// Only the heartbeat keeps it Healthy (nothing probes heartbeat-mode instances):
	// watch it for twice the TTL.
	first := inst.Status.LastHeartbeat
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err := healthy(key, &inst)(ctx); err != nil {
			t.Fatalf("while the script renews: %v", err)
		}
	}
	if !inst.Status.LastHeartbeat.After(first.Time) {
		t.Fatalf("lastHeartbeat did not advance from %v", first)
	}

	// A crash (no deregistration) and a restart: the same Instance, updated in place.
	uid := inst.UID
	s.crash(t)
	s = start(t, vars...)
	testenv.Eventually(t, 15*time.Second, func(ctx context.Context) error {
		if !strings.Contains(s.out.String(), "registered "+self) {
			return fmt.Errorf("not registered yet")
		}
		return nil
	})
	if !strings.Contains(s.out.String(), "updated instance default/"+key.Name) {
		t.Fatalf("the restart did not patch the existing instance:\n%s", s.out)
	}
	var list slugwayv1.InstanceList
	if err := env.Client.List(ctx, &list, client.MatchingLabels{"slugway.io/slug": slug}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].UID != uid {
		t.Fatalf("%d instances after the restart (want the one with uid %s)", len(list.Items), uid)
	}
	testenv.Eventually(t, 10*time.Second, healthy(key, &inst))

	// SIGTERM: deregistered, listener stopped, exit 0.
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(t, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if err := env.Client.Get(ctx, key, &inst); !apierrors.IsNotFound(err) {
		t.Fatalf("instance after SIGTERM: %v, want NotFound", err)
	}
	if _, err := http.Get(self + "/healthz"); err == nil {
		t.Fatal("listener still answering after SIGTERM")
	}
}

// Another identity running the same script for the same slug is refused with the owner's name.
func TestScriptRefusesAnotherOwnersSlug(t *testing.T) {
	ctx := context.Background()
	if err := env.Client.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}, Spec: slugwayv1.ServiceAccountSpec{Owner: identity}}); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	s := start(t, append(creds(t, "system:serviceaccount:default:intruder"), "SLUG=someone-elses", "SELF_URL=http://127.0.0.1:"+port, "LISTEN_PORT="+port)...)
	err := s.wait(t, 20*time.Second)
	if err == nil {
		t.Fatal("service.sh succeeded on a slug it does not own")
	}
	want := fmt.Sprintf(`slug "someone-elses" is owned by %q`, identity)
	if !strings.Contains(s.out.String(), want) {
		t.Fatalf("output does not say %s:\n%s", want, s.out)
	}
	var list slugwayv1.InstanceList
	if err := env.Client.List(ctx, &list, client.MatchingLabels{"slugway.io/slug": "someone-elses"}); err != nil || len(list.Items) != 0 {
		t.Fatalf("instances of someone-elses: %v %d", err, len(list.Items))
	}
}
