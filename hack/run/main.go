// Command run is `make run`: slugway on a local control plane, with no cluster needed.
//
// It starts etcd and kube-apiserver (data kept in .run/, so registrations survive a
// restart), installs the CRDs and the admission webhooks, then runs `slugway controller`,
// `slugway proxy` and the skeleton-svc example as child processes, prints what to try,
// and stops everything on Ctrl-C. The pids of what it starts are kept in .run/pids,
// so that the next run stops exactly those if this one was killed. With CLUSTER=existing it uses the cluster KUBECONFIG
// points at instead (the webhooks are then not served: a remote apiserver cannot reach
// this machine).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/slugway/slugway/internal/proc"
	"github.com/slugway/slugway/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "\nmake run: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run() error {
	root := testenv.Root()
	cluster := flag.String("cluster", envOr("CLUSTER", "embedded"), "embedded (a local control plane) or existing (the cluster KUBECONFIG points at)")
	proxyAddr := flag.String("proxy-addr", envOr("PROXY_ADDR", "127.0.0.1:8080"), "where the proxy listens")
	dataDir := flag.String("data-dir", envOr("DATA_DIR", filepath.Join(root, ".run")), "where the control plane keeps its data and the processes their logs")
	// The other addresses, so that a second run (test/run's) can live beside a user's.
	adminAddr := flag.String("admin-addr", envOr("ADMIN_ADDR", "127.0.0.1:9080"), "the proxy's admin address (/metrics, /readyz, the dashboard)")
	metricsAddr := flag.String("controller-metrics-addr", envOr("CONTROLLER_METRICS_ADDR", "127.0.0.1:8081"), "the controller's /metrics")
	healthAddr := flag.String("controller-health-addr", envOr("CONTROLLER_HEALTH_ADDR", "127.0.0.1:8082"), "the controller's /healthz and /readyz")
	skeletonAddr := flag.String("skeleton-addr", envOr("SKELETON_ADDR", "127.0.0.1:9311"), "where skeleton-svc listens (and registers)")
	grpcAddr := flag.String("grpc-svc-addr", envOr("GRPC_SVC_ADDR", "127.0.0.1:9312"), "where grpc-svc listens (and registers)")
	flag.Parse()
	bin := filepath.Join(root, "bin")
	logs := filepath.Join(*dataDir, "logs")
	pidFile := proc.PidFile{Path: filepath.Join(*dataDir, "pids")}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var kubeconfig string
	var controllerArgs []string
	var identities map[string]string         // service -> kubeconfig of its own identity (embedded only)
	var handOver func(context.Context) error // gives slugs an earlier run registered as the admin to their service
	switch *cluster {
	case "embedded":
		// A crashed or killed earlier run may have left its etcd holding the data directory.
		if pids := stopLeftovers(pidFile, *dataDir); len(pids) > 0 {
			step("stopped what an earlier run left behind (pids %v)", pids)
			time.Sleep(500 * time.Millisecond)
		}
		step("starting etcd and kube-apiserver (data in %s)", *dataDir)
		env, err := startControlPlane(ctx, *dataDir)
		if err != nil {
			return err
		}
		recordChildren(pidFile, "etcd", "kube-apiserver")
		defer func() {
			step("stopping the control plane")
			if env.Stop() == nil {
				_ = pidFile.Remove()
			}
		}()
		kubeconfig = filepath.Join(*dataDir, "kubeconfig")
		if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
			return err
		}
		w := env.WebhookInstallOptions
		step("installed the CRDs and the admission webhooks (served by the controller on %s:%d)", w.LocalServingHost, w.LocalServingPort)
		if identities, handOver, err = demoIdentities(ctx, env, *dataDir, "skeleton-svc", "grpc-svc"); err != nil {
			return err
		}
		step("skeleton-svc and grpc-svc register as %s and %s", serviceAccountUser("skeleton-svc"), serviceAccountUser("grpc-svc"))
		controllerArgs = []string{
			"--webhook-host", w.LocalServingHost, "--webhook-port", fmt.Sprint(w.LocalServingPort), "--webhook-cert-dir", w.LocalServingCertDir,
		}
	case "existing":
		kubeconfig = os.Getenv("KUBECONFIG")
		if kubeconfig == "" {
			return fmt.Errorf("CLUSTER=existing needs KUBECONFIG to point at the cluster")
		}
		step("installing the CRDs into the cluster at KUBECONFIG=%s", kubeconfig)
		kubectl := exec.CommandContext(ctx, filepath.Join(bin, "k8s-"+testenv.K8sVersion, "kubectl"), "apply", "--server-side", "-f", filepath.Join(root, "config", "crd", "bases"))
		kubectl.Stdout, kubectl.Stderr = os.Stdout, os.Stderr
		if err := kubectl.Run(); err != nil {
			return fmt.Errorf("installing the CRDs: %w", err)
		}
		fmt.Println("    note: the admission webhooks are not served with CLUSTER=existing (the cluster cannot call this machine); install the Helm chart for ownership enforcement")
		controllerArgs = []string{"--disable-webhooks"}
	default:
		return fmt.Errorf("CLUSTER=%q: use embedded or existing", *cluster)
	}

	kenv := []string{"KUBECONFIG=" + kubeconfig}
	controllerArgs = append(controllerArgs,
		"--leader-election-namespace", "default", "--allow-loopback",
		"--metrics-bind-address", *metricsAddr, "--health-probe-bind-address", *healthAddr)
	var procs []*proc.Proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			step("stopping %s", procs[i].Name)
			_ = procs[i].Stop(10 * time.Second)
		}
		if *cluster != "embedded" { // else removed once the control plane stopped too
			_ = pidFile.Remove()
		}
	}()
	start := func(name string, env []string, binary string, args ...string) error {
		p, err := proc.Start(name, logs, append(kenv, env...), nil, binary, args...)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		if err := pidFile.Add(name, p.Pid()); err != nil {
			step("warning: %v", err)
		}
		step("started %s (pid %d, log %s)", name, p.Pid(), p.Log)
		return nil
	}
	if err := start("controller", nil, filepath.Join(bin, "slugway"), append([]string{"controller"}, controllerArgs...)...); err != nil {
		return err
	}
	if err := start("proxy", nil, filepath.Join(bin, "slugway"), "proxy", "--listen", *proxyAddr, "--admin-listen", *adminAddr, "--allow-loopback", "--host-domains", "localhost", "--dashboard"); err != nil {
		return err
	}
	if handOver != nil {
		if err := handOver(ctx); err != nil {
			return fmt.Errorf("handing the example slugs to their identities: %w", err)
		}
	}
	if err := start("skeleton-svc", serviceEnv(identities, "skeleton-svc", *skeletonAddr), filepath.Join(bin, "skeleton-svc")); err != nil {
		return err
	}
	if err := start("grpc-svc", serviceEnv(identities, "grpc-svc", *grpcAddr), filepath.Join(bin, "grpc-svc")); err != nil {
		return err
	}

	step("waiting for /skeleton-svc/hello to answer through the proxy")
	url := "http://" + *proxyAddr + "/skeleton-svc/hello"
	body, err := waitFor(ctx, url, procs, 90*time.Second)
	if err != nil {
		return err
	}
	step("waiting for grpc-svc to answer through the proxy, by host name %s", grpcAuthority)
	if err := waitForGRPC(ctx, *proxyAddr, 60*time.Second); err != nil {
		return err
	}
	kubectlDir := filepath.Join(bin, "k8s-"+testenv.K8sVersion)
	fmt.Printf(`
slugway is running. %s answered: %s

In another terminal:

  export KUBECONFIG=%s
  export PATH=%s:$PATH     # kubectl %s, built by hack/controlplane.sh

  curl %s/skeleton-svc/hello
  curl http://skeleton-svc.localhost:%s/skeleton-svc/hello     # the same slug, routed by host name
  kubectl get instances -A
  kubectl get slugway
%s%s
Proxy: http://%s   (admin: http://%s/metrics)
Logs:  %s
Press Ctrl-C to stop everything.
`, url, strings.TrimSpace(body), kubeconfig, kubectlDir, testenv.K8sVersion, *proxyAddr, proxyPort(*proxyAddr), grpcWalkthrough(*proxyAddr), ownershipWalkthrough(identities), *proxyAddr, *adminAddr, logs)

	// Run until Ctrl-C, or until a child dies.
	for {
		select {
		case <-ctx.Done():
			fmt.Println()
			return nil
		case <-time.After(time.Second):
			for _, p := range procs {
				if exited, err := p.Exited(); exited {
					return fmt.Errorf("%s exited (%v); see %s", p.Name, err, p.Log)
				}
			}
		}
	}
}

// startControlPlane starts etcd and kube-apiserver, and gives up cleanly on Ctrl-C:
// envtest itself does not watch a context.
func startControlPlane(ctx context.Context, dataDir string) (*testenv.Env, error) {
	type result struct {
		env *testenv.Env
		err error
	}
	done := make(chan result, 1)
	go func() {
		env, err := testenv.StartWith(testenv.Options{Webhooks: true, DataDir: dataDir, Quiet: true})
		done <- result{env, err}
	}()
	select {
	case r := <-done:
		return r.env, r.err
	case <-ctx.Done():
		for _, comm := range []string{"kube-apiserver", "etcd"} {
			for _, pid := range proc.Children(comm) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil, errors.New("interrupted while starting the control plane")
	}
}

// stopLeftovers kills what an earlier run recorded in its pid file and did not stop
// (it was killed, or crashed). Without a pid file (a run from before pid files, or
// one killed before it wrote any) it falls back to the processes whose command line
// names this data directory's etcd or certificates, and nothing else.
func stopLeftovers(f proc.PidFile, dataDir string) []int {
	pids, ok, err := f.KillRecorded()
	if err != nil {
		step("warning: reading %s: %v", f.Path, err)
	}
	if ok {
		return pids
	}
	pids = proc.KillMatching("--data-dir=" + filepath.Join(dataDir, "etcd"))
	return append(pids, proc.KillMatching("--cert-dir="+filepath.Join(dataDir, "pki"))...)
}

// recordChildren records this process's children named comm (envtest started them
// and does not say their pids).
func recordChildren(f proc.PidFile, comms ...string) {
	for _, comm := range comms {
		for _, pid := range proc.Children(comm) {
			if err := f.Add(comm, pid); err != nil {
				step("warning: %v", err)
			}
		}
	}
}

func waitFor(ctx context.Context, url string, procs []*proc.Proc, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if exited, err := p.Exited(); exited {
				return "", fmt.Errorf("%s exited (%v); see %s", p.Name, err, p.Log)
			}
		}
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("%s did not answer within %s (last: %s)", url, timeout, last)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
