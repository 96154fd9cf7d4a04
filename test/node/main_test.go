// Package node_test proves slugway on a real single-node Kubernetes (hack/node.sh: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd + runc, the kubelet,
// bridge CNI and kube-proxy) with images built by hack/image: helm install of the chart,
// services registering themselves from their pods, garbage collection, scaling, rolling
// updates under load with every failed request counted, leader failover and helm upgrade.
//
// It needs root, the Debian packages (hack/node-packages.sh installs them) and cgroups.
// Where the machine does not allow it, the package prints one line saying why and passes.
// SLUGWAY_NODE=0 skips it on purpose; SLUGWAY_NODE=1 makes a missing precondition fail;
// SLUGWAY_NODE_REUSE=1 runs it on a node already up (hack/node.sh up) and leaves it up.
package node_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slugway/slugway/internal/testenv"
)

var (
	root       = testenv.Root()
	assets     string // kubectl, helm and the Kubernetes binaries
	kubeconfig string // the node's admin kubeconfig (hack/node.sh up prints it)
	helmHome   string
	nodeDir    string
	figures    []string // measured figures, printed at the end
)

func figure(format string, args ...any) {
	figures = append(figures, fmt.Sprintf(format, args...))
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// cannotRun says why the suite cannot run here, or "".
func cannotRun() string {
	if os.Getenv("SLUGWAY_NODE") == "0" {
		return "SLUGWAY_NODE=0"
	}
	if runtime.GOOS != "linux" {
		return "a node needs linux"
	}
	if os.Geteuid() != 0 {
		return "a node needs root (containerd, runc, a bridge and iptables rules)"
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			return "no cgroups mounted under /sys/fs/cgroup"
		}
	}
	if out, err := exec.Command(filepath.Join(root, "hack", "node-packages.sh")).CombinedOutput(); err != nil {
		return "the Debian packages are missing and cannot be installed: " + strings.TrimSpace(string(out))
	}
	var err error
	if assets, err = testenv.AssetsDir(); err != nil {
		return err.Error()
	}
	for _, b := range []string{"kubelet", "kube-scheduler", "kube-proxy", "helm", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return fmt.Sprintf("no %s in %s: run `make controlplane` (hack/controlplane.sh)", b, assets)
		}
	}
	return ""
}

func run(m *testing.M) int {
	if why := cannotRun(); why != "" {
		if os.Getenv("SLUGWAY_NODE") == "1" {
			fmt.Fprintf(os.Stderr, "test/node: cannot run: %s\n", why)
			return 1
		}
		fmt.Printf("test/node: SKIP (no real node here): %s\n", why)
		return 0
	}
	// One node per machine: the bridge, its addresses and the iptables rules are global.
	lock, err := os.OpenFile("/run/slugway-node.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = lock.Close() }()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintln(os.Stderr, "test/node: another node suite holds /run/slugway-node.lock; waiting for it")
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}

	tmp, err := os.MkdirTemp("", "slugway-node-suite-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	helmHome = filepath.Join(tmp, "helm")
	nodeDir = envOr("NODE_DIR", "/var/lib/slugway-node")

	start := time.Now()
	if os.Getenv("SLUGWAY_NODE_REUSE") == "1" {
		// A node someone brought up with hack/node.sh up (for debugging the suite); left up.
		kubeconfig = filepath.Join(nodeDir, "admin.kubeconfig")
		return runSuite(m, start)
	}
	script := filepath.Join(root, "hack", "node.sh")
	var up bytes.Buffer
	cmd := exec.Command(script, "up")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KUBEBUILDER_ASSETS="+assets, "NODE_DIR="+nodeDir)
	cmd.Stdout, cmd.Stderr = &up, os.Stderr
	upErr := cmd.Run()
	defer func() {
		down := exec.Command(script, "down")
		down.Dir, down.Env = root, cmd.Env
		down.Stdout, down.Stderr = os.Stderr, os.Stderr
		if err := down.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "test/node: hack/node.sh down: %v\n", err)
		}
	}()
	if upErr != nil {
		fmt.Fprintf(os.Stderr, "test/node: hack/node.sh up: %v\n", upErr)
		dumpLogs()
		return 1
	}
	kubeconfig = strings.TrimSpace(up.String())
	figure("node up (images built and imported, node Ready, default ServiceAccount): %s", time.Since(start).Round(100*time.Millisecond))
	return runSuite(m, start)
}

func runSuite(m *testing.M, start time.Time) int {
	code := m.Run()
	if code != 0 {
		dumpLogs()
	}
	fmt.Println("test/node: figures:")
	for _, f := range figures {
		fmt.Println("  " + f)
	}
	fmt.Printf("test/node: suite took %s (bring-up included)\n", time.Since(start).Round(time.Second))
	return code
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// dumpLogs prints the tail of every component's log and the pods, to debug a failure.
func dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(nodeDir, "logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(os.Stderr, "---- %s (tail)\n%s\n", l, strings.Join(lines, "\n"))
	}
	if kubeconfig != "" {
		out, _ := kubectl("get", "pods", "-A", "-o", "wide")
		fmt.Fprintf(os.Stderr, "---- pods\n%s\n", out)
		out, _ = kubectl("get", "events", "-A", "--sort-by=.lastTimestamp")
		if lines := strings.Split(out, "\n"); len(lines) > 40 {
			out = strings.Join(lines[len(lines)-40:], "\n")
		}
		fmt.Fprintf(os.Stderr, "---- events\n%s\n", out)
	}
}

func kubectl(args ...string) (string, error) {
	return kubectlIn("", args...)
}

func kubectlIn(stdin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func helm(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(assets, "helm"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// kc, kcIn and hc run kubectl and helm, failing the test on an error.
func kc(t *testing.T, args ...string) string {
	t.Helper()
	return kcIn(t, "", args...)
}

func kcIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectlIn(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hc(t *testing.T, args ...string) string {
	t.Helper()
	out, err := helm(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls f until it returns nil, failing the test with f's last error after timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %s: %v", timeout, err)
	return 0
}
