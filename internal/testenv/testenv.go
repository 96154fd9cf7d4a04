// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest)
// with slugway's CRDs, and optionally its admission webhooks, installed. The binaries
// come from bin/, built by hack/controlplane.sh; nothing is downloaded.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"go.uber.org/zap/zapcore"

	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/manager"
)

// K8sVersion is the control plane version hack/controlplane.sh builds.
const K8sVersion = "v1.37.2"

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config // admin (system:masters)
	Client client.Client
	Root   string // the repository root
}

// Root returns the repository root (the directory holding go.mod).
func Root() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// AssetsDir is where kube-apiserver, etcd, kubectl and helm are: $KUBEBUILDER_ASSETS or bin/k8s-<version>.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(Root(), "bin", "k8s-"+K8sVersion)
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("no kube-apiserver in %s: run `make controlplane` (hack/controlplane.sh) first", dir)
	}
	return dir, nil
}

// Start starts kube-apiserver and etcd with the CRDs from config/crd installed.
// With webhooks, the admission webhook configurations from config/webhook are
// installed too, pointing at a local port that StartController serves.
func Start(webhooks bool) (*Env, error) {
	return StartWith(Options{Webhooks: webhooks})
}

// Options configure StartWith.
type Options struct {
	// Webhooks installs the admission webhook configurations.
	Webhooks bool
	// DataDir keeps etcd's data (and the apiserver's certificates) there, so that a
	// restart finds the objects again. Empty means a temporary directory.
	DataDir string
	// APIServerPort fixes the apiserver's port; 0 picks a free one.
	APIServerPort int
	// Quiet keeps the controller-runtime logger unset (the caller sets its own).
	Quiet bool
}

// StartWith starts a control plane as Options say.
func StartWith(o Options) (*Env, error) {
	webhooks := o.Webhooks
	if !o.Quiet {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	}
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	root := Root()
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	if o.DataDir != "" || o.APIServerPort != 0 {
		etcdDir, certDir := "", ""
		if o.DataDir != "" {
			etcdDir, certDir = filepath.Join(o.DataDir, "etcd"), filepath.Join(o.DataDir, "pki")
			for _, d := range []string{etcdDir, certDir} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					return nil, err
				}
			}
			// envtest learns the serving CA only when it generates the serving certificate,
			// so a new process regenerates it (etcd's data is what must persist).
			for _, f := range []string{"apiserver.crt", "apiserver.key"} {
				if err := os.Remove(filepath.Join(certDir, f)); err != nil && !os.IsNotExist(err) {
					return nil, err
				}
			}
		}
		env.ControlPlane.Etcd = &envtest.Etcd{DataDir: etcdDir}
		env.ControlPlane.APIServer = &envtest.APIServer{CertDir: certDir}
		if o.APIServerPort != 0 {
			env.ControlPlane.APIServer.SecureServing.Address = "127.0.0.1"
			env.ControlPlane.APIServer.SecureServing.Port = strconv.Itoa(o.APIServerPort)
		}
	}
	if webhooks {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook")}}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: kubeclient.Scheme()})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Environment: env, Config: cfg, Client: c, Root: root}, nil
}

// zapLevel keeps test logs quiet unless SLUGWAY_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("SLUGWAY_TEST_VERBOSE") != "" {
		return -1
	}
	return 2
}

// ControllerOptions returns manager options suited to tests: no metrics or probe
// ports, no leader election, and the webhook server on envtest's port.
func (e *Env) ControllerOptions() manager.Options {
	w := e.WebhookInstallOptions
	return manager.Options{
		MetricsAddr:      "0",
		ProbeAddr:        "0",
		WebhookHost:      w.LocalServingHost,
		WebhookPort:      w.LocalServingPort,
		WebhookCertDir:   w.LocalServingCertDir,
		DisableWebhooks:  len(w.Paths) == 0,
		AdminGroups:      []string{"system:masters", "slugway:admins"},
		ReservedSlugs:    []string{"healthz", "readyz", "metrics", "slugway"},
		HeartbeatRefresh: 30 * time.Second,
		ProbeConcurrency: 16,
		Reconcilers:      4,
		HeartbeatWriters: 4,
		// Tests start several managers in one process.
		SkipNameValidation: true,
	}
}

// StartController runs the slugway controller in-process until stop is called.
// With webhooks, it waits until the webhook server answers.
func (e *Env) StartController(o manager.Options) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := manager.New(ctx, e.Config, o)
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stop = func() {
		cancel()
		<-done
	}
	if !o.DisableWebhooks {
		deadline := time.Now().Add(30 * time.Second)
		for mgr.GetWebhookServer().StartedChecker()(nil) != nil {
			if time.Now().After(deadline) {
				stop()
				return nil, errors.New("webhook server did not start within 30s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		stop()
		return nil, errors.New("caches did not sync")
	}
	return stop, nil
}

// User returns a rest.Config authenticated as name with groups.
func (e *Env) User(name string, groups ...string) (*rest.Config, error) {
	u, err := e.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// GrantSlugwayAccess gives every authenticated user RBAC access to slugway.io resources,
// as the chart's slugway-service ClusterRole does for workloads; ownership is then
// decided by the admission webhook alone, which is what the tests exercise.
func (e *Env) GrantSlugwayAccess(ctx context.Context) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-slugway-all"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"slugway.io"},
			Resources: []string{"instances", "instances/status", "serviceaccounts", "serviceaccounts/status"},
			Verbs:     []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-slugway-all"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "system:authenticated"}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := e.Client.Create(ctx, o); client.IgnoreAlreadyExists(err) != nil {
			return err
		}
	}
	return nil
}

// KillAPIServer SIGKILLs kube-apiserver, as a crash would, and waits until its port is closed.
// (A graceful stop waits for open watches, up to 20s.) etcd keeps running behind it.
func (e *Env) KillAPIServer() error {
	hostport := strings.Trim(strings.TrimPrefix(e.Config.Host, "https://"), "/")
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	pid, err := findProcess("kube-apiserver", "--secure-port="+port)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", hostport, time.Second)
		if err != nil {
			return nil
		}
		_ = c.Close()
		if i == 200 {
			return fmt.Errorf("kube-apiserver (pid %d) still accepts connections 10s after SIGKILL", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RestartAPIServer starts kube-apiserver again after KillAPIServer, on the same port with
// the same certificates, so existing clients reconnect. Start the Env with a DataDir.
func (e *Env) RestartAPIServer() error {
	_ = e.ControlPlane.APIServer.Stop() // reaps the killed process
	return e.ControlPlane.APIServer.Start()
}

// findProcess returns the pid of the process whose argv[0] ends with name and that has arg.
func findProcess(name, arg string) (int, error) {
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if strings.HasSuffix(args[0], name) && slices.Contains(args, arg) {
			return strconv.Atoi(filepath.Base(filepath.Dir(f)))
		}
	}
	return 0, fmt.Errorf("no %s process with %s", name, arg)
}
