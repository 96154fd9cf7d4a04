// Package harness runs slugway the way users do, for the end-to-end and fault tests:
// the real binaries (slugway controller, slugway proxy, skeleton-svc) as processes against
// a real kube-apiserver and etcd, driven with kubectl and real HTTP clients.
package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/slugway/slugway/internal/freeport"
	"github.com/slugway/slugway/internal/proc"
	"github.com/slugway/slugway/internal/testenv"
)

// Cluster is one control plane and the slugway processes running against it.
type Cluster struct {
	Env        *testenv.Env
	Dir        string // temp dir: binaries, kubeconfigs, logs, etcd data
	slugway    string // path of the slugway binary
	skeleton   string // path of the skeleton-svc binary
	kubectl    string
	kubeconfig map[string]string // user -> kubeconfig path

	Controller *proc.Proc
	Proxy      *proc.Proc
	ProxyURL   string
	AdminURL   string
	Skeleton   *proc.Proc
	SkelURL    string
}

// Main runs a test binary's tests against a fresh Cluster made by Setup, and tears it down.
func Main(m interface{ Run() int }, c **Cluster) {
	var err error
	*c, err = Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness setup:", err)
		if *c != nil {
			(*c).Teardown()
		}
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		(*c).DumpLogs()
	}
	(*c).Teardown()
	os.Exit(code)
}

// Setup builds the binaries, starts a control plane with the webhooks (its data in a temp
// dir, so the apiserver can be killed and restarted), creates the users admin, skeleton
// (owner of skeleton-svc), mallory (an impostor) and root (group slugway:admins) with the
// RBAC a platform team would give them, and starts the controller, the proxy and skeleton-svc.
func Setup() (*Cluster, error) {
	dir, err := os.MkdirTemp("", "slugway-harness-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, kubeconfig: map[string]string{}}
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

	c.Env, err = testenv.StartWith(testenv.Options{Webhooks: true, DataDir: filepath.Join(dir, "data")})
	if err != nil {
		return c, err
	}
	// Identities: an admin, the skeleton-svc's own identity, an impostor, and an admin-group member.
	if err := c.writeKubeconfig("admin", c.Env.KubeConfig); err != nil {
		return c, err
	}
	for user, groups := range map[string][]string{
		"skeleton": nil,
		"mallory":  nil,
		"root":     {"slugway:admins"},
	} {
		u, err := c.Env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
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

	if c.Controller, err = c.StartController(); err != nil {
		return c, err
	}
	if err := c.StartProxy(); err != nil {
		return c, err
	}
	if err := c.StartSkeleton(); err != nil {
		return c, err
	}
	return c, nil
}

// Kubeconfig returns the path of a user's kubeconfig.
func (c *Cluster) Kubeconfig(user string) string { return c.kubeconfig[user] }

func (c *Cluster) writeKubeconfig(user string, data []byte) error {
	p := filepath.Join(c.Dir, "kubeconfig-"+user)
	c.kubeconfig[user] = p
	return os.WriteFile(p, data, 0o600)
}

// grantServiceRole applies config/rbac/service_role.yaml (the slugway-service ClusterRole
// that workloads are bound to) and binds the users to it, and config/rbac/admin_role.yaml
// (full access for the slugway:admins group), exactly as a platform team would.
func (c *Cluster) grantServiceRole(users ...string) error {
	for _, f := range []string{"service_role.yaml", "admin_role.yaml"} {
		if out, err := c.KubectlAs("admin", "apply", "-f", filepath.Join(testenv.Root(), "config", "rbac", f)); err != nil {
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
	return c.Env.Client.Create(context.Background(), b)
}

func (c *Cluster) logs() string { return filepath.Join(c.Dir, "logs") }

// StartController runs a `slugway controller` process serving the webhooks, with extra flags.
// It returns once the webhook port accepts connections.
func (c *Cluster) StartController(extra ...string) (*proc.Proc, error) {
	return c.StartControllerNamed("controller", true, extra...)
}

// StartControllerNamed runs a controller process logging to <name>.log. With webhooks
// false it does not serve them (a second replica cannot share the first's port).
func (c *Cluster) StartControllerNamed(name string, webhooks bool, extra ...string) (*proc.Proc, error) {
	w := c.Env.WebhookInstallOptions
	args := []string{"controller", "--leader-election-namespace", "default", "--allow-loopback",
		"--metrics-bind-address", "0", "--health-probe-bind-address", FreeAddr()}
	if webhooks {
		args = append(args, "--webhook-host", w.LocalServingHost, "--webhook-port", fmt.Sprint(w.LocalServingPort), "--webhook-cert-dir", w.LocalServingCertDir)
	} else {
		args = append(args, "--disable-webhooks")
	}
	p, err := proc.Start(name, c.logs(), []string{"KUBECONFIG=" + c.kubeconfig["admin"]}, nil, c.slugway, append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	if !webhooks {
		return p, nil
	}
	// Ready when the webhook server accepts connections.
	return p, WaitUntil(60*time.Second, func() error {
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

// StartProxy runs a `slugway proxy` process (on the same address as before, if restarted),
// routing <slug>.localhost by host name as make run's does, and waits until /readyz answers 200.
func (c *Cluster) StartProxy(extra ...string) error {
	listen, admin := strings.TrimPrefix(c.ProxyURL, "http://"), strings.TrimPrefix(c.AdminURL, "http://")
	if listen == "" {
		listen, admin = FreeAddr(), FreeAddr()
	}
	p, err := proc.Start("proxy", c.logs(), []string{"KUBECONFIG=" + c.kubeconfig["admin"]}, nil, c.slugway,
		append([]string{"proxy", "--listen", listen, "--admin-listen", admin, "--allow-loopback", "--host-domains", "localhost"}, extra...)...)
	if err != nil {
		return err
	}
	c.Proxy, c.ProxyURL, c.AdminURL = p, "http://"+listen, "http://"+admin
	return WaitUntil(60*time.Second, func() error {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("proxy exited: %v", err)
		}
		code, _, err := Get(c.AdminURL + "/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("readyz: %d", code)
		}
		return err
	})
}

// StartSkeleton runs skeleton-svc (on the same URL as before, if restarted) as user skeleton.
func (c *Cluster) StartSkeleton() error {
	if c.SkelURL == "" {
		c.SkelURL = "http://" + FreeAddr()
	}
	p, err := proc.Start("skeleton-svc", c.logs(), []string{
		"KUBECONFIG=" + c.kubeconfig["skeleton"],
		"SELF_URL=" + c.SkelURL,
		"LISTEN_ADDR=" + strings.TrimPrefix(c.SkelURL, "http://"),
		"POD_NAMESPACE=default",
	}, nil, c.skeleton)
	if err != nil {
		return err
	}
	c.Skeleton = p
	return nil
}

// Teardown stops everything and removes the temp dir (kept if SLUGWAY_E2E_KEEP is set).
func (c *Cluster) Teardown() {
	for _, p := range []*proc.Proc{c.Skeleton, c.Proxy, c.Controller} {
		if p != nil {
			_ = p.Stop(10 * time.Second)
		}
	}
	if c.Env != nil {
		_ = c.Env.Stop()
	}
	if os.Getenv("SLUGWAY_E2E_KEEP") == "" {
		_ = os.RemoveAll(c.Dir)
	}
}

// DumpLogs prints the tail of each process's log, for a failed run.
func (c *Cluster) DumpLogs() {
	for _, p := range []*proc.Proc{c.Controller, c.Proxy, c.Skeleton} {
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

// KubectlAs runs kubectl as one of the users and returns its combined output.
func (c *Cluster) KubectlAs(user string, args ...string) (string, error) {
	return c.KubectlIn(user, "", args...)
}

// KubectlIn runs kubectl as user with stdin.
func (c *Cluster) KubectlIn(user, stdin string, args ...string) (string, error) {
	cmd := exec.Command(c.kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig[user])
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ReleaseAtCleanup deletes slug when the test ends and waits until it is gone, which
// its finalizer allows only once its instances are. Otherwise its instances outlive
// their backends: the controller keeps probing them, a later test's backend that the
// kernel gives the same port is refused as a URL another slug holds, and tests that
// list every instance (TestControllerRestart) see another test's.
func (c *Cluster) ReleaseAtCleanup(t testing.TB, slug string) {
	t.Helper()
	t.Cleanup(func() {
		if out, err := c.KubectlAs("root", "delete", "slug", slug, "--ignore-not-found", "--wait=true", "--timeout=60s"); err != nil {
			t.Errorf("releasing slug %s: %v\n%s", slug, err, out)
		}
	})
}

// FreeAddr returns a free 127.0.0.1:port for a process the test starts
// (internal/freeport: below the ephemeral range, reserved against the other tests).
func FreeAddr() string {
	addr, err := freeport.Addr()
	if err != nil {
		panic(err)
	}
	return addr
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// Get fetches url and returns the status code and body.
func Get(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// WaitUntil retries f every 100ms until it returns nil or timeout passes.
func WaitUntil(timeout time.Duration, f func() error) error {
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

// Eventually fails the test unless f returns nil within timeout.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	if err := WaitUntil(timeout, f); err != nil {
		t.Fatal(err)
	}
}

// KubectlTable runs `kubectl get` and parses its real table output into rows keyed by column header.
func (c *Cluster) KubectlTable(t testing.TB, user string, args ...string) []map[string]string {
	t.Helper()
	out, err := c.KubectlAs(user, append([]string{"get"}, args...)...)
	if err != nil {
		t.Fatalf("kubectl get %v: %v\n%s", args, err, out)
	}
	return ParseTable(out)
}

// ParseTable splits kubectl's column output using the header's column starts.
func ParseTable(out string) []map[string]string {
	sc := bufio.NewScanner(strings.NewReader(out))
	if !sc.Scan() {
		return nil
	}
	header := sc.Text()
	var names []string
	var starts []int
	for i := 0; i < len(header); {
		if header[i] == ' ' {
			i++
			continue
		}
		j := i
		// Column names may contain single spaces ("OWNER SLUG", "LAST HEARTBEAT").
		for j < len(header) && !(header[j] == ' ' && (j+1 >= len(header) || header[j+1] == ' ')) {
			j++
		}
		names, starts = append(names, header[i:j]), append(starts, i)
		i = j
	}
	var rows []map[string]string
	for sc.Scan() {
		line := sc.Text()
		row := map[string]string{}
		for k, name := range names {
			end := len(line)
			if k+1 < len(starts) && starts[k+1] < end {
				end = starts[k+1]
			}
			if starts[k] < len(line) {
				row[name] = strings.TrimSpace(line[starts[k]:end])
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// FirstOf returns a unless it is nil.
func FirstOf(a, b map[string]string) map[string]string {
	if a != nil {
		return a
	}
	return b
}

// FindRow returns the first row whose column col is val.
func FindRow(rows []map[string]string, col, val string) map[string]string {
	for _, r := range rows {
		if r[col] == val {
			return r
		}
	}
	return nil
}

// Supervised keeps a process running the way a Deployment does: when it exits, it is
// started again after a second.
type Supervised struct {
	mu       sync.Mutex
	cur      *proc.Proc
	restarts int
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// Supervise runs start, and runs it again whenever its process exits, until Stop.
func Supervise(start func() (*proc.Proc, error)) *Supervised {
	s := &Supervised{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			p, err := start()
			if err == nil {
				s.mu.Lock()
				s.cur = p
				s.mu.Unlock()
				select {
				case <-p.Done():
				case <-s.stop:
					_ = p.Stop(15 * time.Second)
					return
				}
			}
			select {
			case <-s.stop:
				return
			case <-time.After(time.Second):
			}
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
		}
	}()
	return s
}

// Current returns the running process (nil before the first start).
func (s *Supervised) Current() *proc.Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Restarts counts how often the process had to be started again.
func (s *Supervised) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Stop ends supervision and the process. It may be called more than once.
func (s *Supervised) Stop() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Load sends GETs to url from workers goroutines, one after another each, handing every
// outcome to record (called from those goroutines), until the returned stop is called;
// stop waits for the requests in flight.
func Load(url string, workers int, record func(code int, body string, err error)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				code, body, err := Get(url)
				record(code, body, err)
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}
