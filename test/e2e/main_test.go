// Package e2e drives the real binaries as processes (slugway controller, slugway proxy,
// skeleton-svc) against a real kube-apiserver and etcd, with kubectl and real HTTP
// backends, replaying the seed's walkthrough plus ownership and fault scenarios.
package e2e

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
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/slugway/slugway/internal/proc"
	"github.com/slugway/slugway/internal/testenv"
)

// cluster is the shared state of the suite: one control plane and the slugway processes.
type cluster struct {
	env        *testenv.Env
	dir        string // temp dir: binaries, kubeconfigs, logs
	slugway    string // path of the slugway binary
	skeleton   string // path of the skeleton-svc binary
	kubectl    string
	kubeconfig map[string]string // user -> kubeconfig path
	controller *proc.Proc
	proxy      *proc.Proc
	proxyURL   string
	adminURL   string
	skel       *proc.Proc
	skelURL    string
}

var c *cluster

func TestMain(m *testing.M) {
	var err error
	c, err = setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		if c != nil {
			c.teardown()
		}
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		c.dumpLogs()
	}
	c.teardown()
	os.Exit(code)
}

func setup() (*cluster, error) {
	dir, err := os.MkdirTemp("", "slugway-e2e-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, kubeconfig: map[string]string{}}
	assets, err := testenv.AssetsDir()
	if err != nil {
		return c, err
	}
	c.kubectl = filepath.Join(assets, "kubectl")
	c.slugway, c.skeleton = filepath.Join(dir, "slugway"), filepath.Join(dir, "skeleton-svc")
	root := testenv.Root()
	for out, pkg := range map[string]string{c.slugway: ".", c.skeleton: "./examples/skeleton-svc"} {
		build := exec.Command("go", "build", "-o", out, pkg)
		build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			return c, fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}

	c.env, err = testenv.StartWith(testenv.Options{Webhooks: true})
	if err != nil {
		return c, err
	}
	// Identities: an admin, the skeleton-svc's own identity, an impostor, and an admin-group member.
	if err := c.writeKubeconfig("admin", c.env.KubeConfig); err != nil {
		return c, err
	}
	for user, groups := range map[string][]string{
		"skeleton": nil,
		"mallory":  nil,
		"root":     {"slugway:admins"},
	} {
		u, err := c.env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
		if err != nil {
			return c, err
		}
		kc, err := u.KubeConfig()
		if err != nil {
			return c, err
		}
		if err := c.writeKubeconfig(user, kc); err != nil {
			return c, err
		}
	}
	if err := c.grantServiceRole("skeleton", "mallory", "root"); err != nil {
		return c, err
	}

	if err := c.startController(); err != nil {
		return c, err
	}
	if err := c.startProxy(); err != nil {
		return c, err
	}
	if err := c.startSkeleton(); err != nil {
		return c, err
	}
	return c, nil
}

func (c *cluster) writeKubeconfig(user string, data []byte) error {
	p := filepath.Join(c.dir, "kubeconfig-"+user)
	c.kubeconfig[user] = p
	return os.WriteFile(p, data, 0o600)
}

// grantServiceRole applies config/rbac/service_role.yaml (the slugway-service ClusterRole
// that workloads are bound to) and binds the users to it, and config/rbac/admin_role.yaml
// (full access for the slugway:admins group), exactly as a platform team would.
func (c *cluster) grantServiceRole(users ...string) error {
	for _, f := range []string{"service_role.yaml", "admin_role.yaml"} {
		if out, err := c.kubectlAs("admin", "apply", "-f", filepath.Join(testenv.Root(), "config", "rbac", f)); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
	}
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-slugway-service"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "slugway-service"},
	}
	for _, u := range users {
		b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: u})
	}
	return c.env.Client.Create(context.Background(), b)
}

func (c *cluster) logs() string { return filepath.Join(c.dir, "logs") }

func (c *cluster) startController() error {
	w := c.env.WebhookInstallOptions
	p, err := proc.Start("controller", c.logs(), []string{"KUBECONFIG=" + c.kubeconfig["admin"]}, nil, c.slugway, "controller",
		"--webhook-host", w.LocalServingHost, "--webhook-port", fmt.Sprint(w.LocalServingPort), "--webhook-cert-dir", w.LocalServingCertDir,
		"--leader-election-namespace", "default", "--allow-loopback",
		"--metrics-bind-address", "0", "--health-probe-bind-address", freeAddr())
	if err != nil {
		return err
	}
	c.controller = p
	// Ready when the webhook server accepts connections.
	return waitUntil(60*time.Second, func() error {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("controller exited: %v", err)
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(w.LocalServingHost, fmt.Sprint(w.LocalServingPort)), time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

func (c *cluster) startProxy() error {
	listen, admin := freeAddr(), freeAddr()
	p, err := proc.Start("proxy", c.logs(), []string{"KUBECONFIG=" + c.kubeconfig["admin"]}, nil, c.slugway, "proxy",
		"--listen", listen, "--admin-listen", admin, "--allow-loopback")
	if err != nil {
		return err
	}
	c.proxy, c.proxyURL, c.adminURL = p, "http://"+listen, "http://"+admin
	return waitUntil(60*time.Second, func() error {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("proxy exited: %v", err)
		}
		code, _, err := get(c.adminURL + "/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("readyz: %d", code)
		}
		return err
	})
}

func (c *cluster) startSkeleton() error {
	if c.skelURL == "" {
		c.skelURL = "http://" + freeAddr()
	}
	p, err := proc.Start("skeleton-svc", c.logs(), []string{
		"KUBECONFIG=" + c.kubeconfig["skeleton"],
		"SELF_URL=" + c.skelURL,
		"LISTEN_ADDR=" + strings.TrimPrefix(c.skelURL, "http://"),
		"POD_NAMESPACE=default",
	}, nil, c.skeleton)
	if err != nil {
		return err
	}
	c.skel = p
	return nil
}

func (c *cluster) teardown() {
	for _, p := range []*proc.Proc{c.skel, c.proxy, c.controller} {
		if p != nil {
			_ = p.Stop(10 * time.Second)
		}
	}
	if c.env != nil {
		_ = c.env.Stop()
	}
	if os.Getenv("SLUGWAY_E2E_KEEP") == "" {
		_ = os.RemoveAll(c.dir)
	}
}

func (c *cluster) dumpLogs() {
	for _, p := range []*proc.Proc{c.controller, c.proxy, c.skel} {
		if p == nil {
			continue
		}
		b, _ := os.ReadFile(p.Log)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(os.Stderr, "---- last lines of %s ----\n%s\n", p.Name, strings.Join(lines, "\n"))
	}
}

// kubectlAs runs kubectl as one of the suite's users and returns its combined output.
func (c *cluster) kubectlAs(user string, args ...string) (string, error) {
	return c.kubectlIn(user, "", args...)
}

func (c *cluster) kubectlIn(user, stdin string, args ...string) (string, error) {
	cmd := exec.Command(c.kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig[user])
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func get(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func waitUntil(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	if err := waitUntil(timeout, f); err != nil {
		t.Fatal(err)
	}
}
