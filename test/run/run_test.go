// Package run tests `make run` as a new user meets it: hack/run.sh builds and starts
// the control plane, the controller, the proxy and both examples, prints a
// walkthrough, and stops everything on Ctrl-C. The test runs every command the
// walkthrough prints, as printed (curl, grpcurl, kubectl), and checks what each one
// shows, then presses Ctrl-C.
package run

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/test/harness"
)

// ready is the walkthrough's last line: everything answered.
const ready = "Press Ctrl-C to stop everything."

func TestMakeRun(t *testing.T) {
	if _, err := testenv.AssetsDir(); err != nil {
		t.Fatalf("the local control plane is not built (make controlplane): %v", err)
	}
	root := testenv.Root()
	dataDir := t.TempDir()
	proxyAddr := harness.FreeAddr()
	// Every address of its own, so that a user's `make run` can go on beside this one.
	cmd := exec.Command(filepath.Join(root, "hack", "run.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"PROXY_ADDR="+proxyAddr, "DATA_DIR="+dataDir,
		"ADMIN_ADDR="+harness.FreeAddr(), "CONTROLLER_METRICS_ADDR="+harness.FreeAddr(), "CONTROLLER_HEALTH_ADDR="+harness.FreeAddr(),
		"SKELETON_ADDR="+harness.FreeAddr(), "GRPC_SVC_ADDR="+harness.FreeAddr())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &testenv.SyncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped { // the test failed before Ctrl-C: take down everything it started
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("make run printed:\n%s", out.String())
			for _, name := range []string{"controller", "proxy", "skeleton-svc", "grpc-svc"} {
				if b, err := os.ReadFile(filepath.Join(dataDir, "logs", name+".log")); err == nil {
					t.Logf("---- %s.log (tail)\n%s", name, tail(string(b), 3000))
				}
			}
		}
	})
	lines := make(chan string, 1024)
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			_, _ = out.Write(append(s.Bytes(), '\n'))
			lines <- s.Text()
		}
		close(lines)
	}()

	start := time.Now()
	timeout := time.After(5 * time.Minute) // a cold control plane build is not counted: make test built it first
	for up := false; !up; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("make run ended before it was ready: %v", <-exited)
			}
			up = strings.TrimSpace(l) == ready
		case <-timeout:
			t.Fatal("make run was not ready after 5 minutes")
		}
	}
	t.Logf("make run ready after %s", time.Since(start).Round(100*time.Millisecond))

	exports, cmds := walkthrough(t, out.String())
	if len(exports) != 2 {
		t.Fatalf("the walkthrough exports %q; want KUBECONFIG and PATH", exports)
	}
	checks := map[string]int{}
	for _, c := range cmds {
		run := exec.Command("bash", "-c", "set -o pipefail\n"+strings.Join(exports, "\n")+"\n"+c)
		run.Dir = t.TempDir()              // the commands must not depend on being run in the clone
		var stdout, stderr strings.Builder // curl's progress meter goes to stderr
		run.Stdout, run.Stderr = &stdout, &stderr
		err := run.Run()
		kind := check(t, c, stdout.String(), stderr.String(), err, proxyAddr)
		checks[kind]++
		t.Logf("$ %s\n%s", c, stdout.String())
	}
	// The walkthrough must go on showing each of these.
	for kind, want := range map[string]int{"curl": 2, "grpcurl health": 1, "grpcurl list": 1, "grpcurl unary": 1,
		"instances": 1, "category": 1, "slugs": 1, "impostor": 1} {
		if checks[kind] < want {
			t.Errorf("the walkthrough ran %d %q commands, want %d (ran: %v)", checks[kind], kind, want, checks)
		}
	}

	// Ctrl-C stops everything it started, and it says so with exit code 0.
	pids := recordedPids(t, filepath.Join(dataDir, "pids"))
	stopped = true
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("make run exited with %v after Ctrl-C, want 0", err)
		}
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatal("make run did not stop within 60s of Ctrl-C")
	}
	for name, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("%s (pid %d) still runs after make run stopped", name, pid)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "pids")); !os.IsNotExist(err) {
		t.Errorf("the pid file is still there after a clean stop (%v)", err)
	}
}

// walkthrough returns the printed walkthrough's export lines and its commands
// (continued lines joined, comments left to bash).
func walkthrough(t *testing.T, printed string) (exports, cmds []string) {
	t.Helper()
	_, rest, ok := strings.Cut(printed, "In another terminal:\n")
	if !ok {
		t.Fatalf("no walkthrough in:\n%s", printed)
	}
	text, _, _ := strings.Cut(rest, "\nProxy:")
	var cur string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if cur != "" {
			l = cur + " " + l
			cur = ""
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur = s
			continue
		}
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "export "):
			exports = append(exports, l)
		default:
			cmds = append(cmds, l)
		}
	}
	return exports, cmds
}

// check checks one walkthrough command's output (out, and errOut on stderr), and
// says which kind of command it was.
func check(t *testing.T, c, out, errOut string, err error, proxyAddr string) string {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Errorf("$ %s\n%s%s\n%s", c, out, errOut, fmt.Sprintf(format, args...))
	}
	if strings.Contains(c, "--as=") {
		if err == nil || !strings.Contains(errOut, "denied the request") || !strings.Contains(errOut, "does not own") {
			fail("(%v): want the ownership webhook to refuse the impostor", err)
		}
		return "impostor"
	}
	if err != nil {
		fail("failed: %v", err)
		return "failed"
	}
	name := strings.Fields(c)[0]
	switch {
	case name == "curl":
		if !strings.Contains(c, proxyAddr) && !strings.Contains(c, ".localhost:"+port(proxyAddr)) {
			fail("curl is not pointed at this run's proxy %s", proxyAddr)
		}
		if strings.Join(strings.Fields(out), "") != `{"hello":"world"}` {
			fail(`want skeleton-svc's {"hello": "world"}`)
		}
		return "curl"
	case name == "grpcurl" && strings.HasSuffix(c, "grpc.health.v1.Health/Check"):
		if !strings.Contains(out, `"SERVING"`) {
			fail("want grpc-svc SERVING")
		}
		return "grpcurl health"
	case name == "grpcurl" && strings.HasSuffix(c, " list"):
		for _, svc := range []string{"grpc.health.v1.Health", "grpc.testing.TestService"} {
			if !strings.Contains(out, svc) {
				fail("want %s listed (server reflection through the proxy)", svc)
			}
		}
		return "grpcurl list"
	case name == "grpcurl" && strings.HasSuffix(c, "UnaryCall"):
		if !strings.Contains(out, `"payload"`) {
			fail("want a payload in the reply")
		}
		return "grpcurl unary"
	case strings.HasPrefix(c, "kubectl get instances"):
		rows := harness.ParseTable(out)
		for _, slug := range []string{"skeleton-svc", "grpc-svc"} {
			if r := harness.FindRow(rows, "OWNER SLUG", slug); r == nil || r["STATUS"] != "Healthy" {
				fail("want %s's instance Healthy, got %v", slug, r)
			}
		}
		return "instances"
	case strings.HasPrefix(c, "kubectl get slugway"):
		for _, s := range []string{"serviceaccount.slugway.io/skeleton-svc", "serviceaccount.slugway.io/grpc-svc", "instance.slugway.io/"} {
			if !strings.Contains(out, s) {
				fail("want %s in the category's listing", s)
			}
		}
		return "category"
	case strings.HasPrefix(c, "kubectl get slugs"):
		rows := harness.ParseTable(out)
		for _, slug := range []string{"skeleton-svc", "grpc-svc"} {
			if r := harness.FindRow(rows, "NAME", slug); r == nil || r["OWNER"] != "system:serviceaccount:default:"+slug {
				fail("want %s owned by its own ServiceAccount identity, got %v", slug, r)
			}
		}
		return "slugs"
	}
	return name // any other command: it ran without error
}

// recordedPids reads make run's pid file: "pid start-time name" per line.
func recordedPids(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("make run's pid file: %v", err)
	}
	pids := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("pid file line %q", l)
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("pid file line %q: %v", l, err)
		}
		pids[f[2]] = pid
	}
	if len(pids) < 6 { // etcd, kube-apiserver, controller, proxy, skeleton-svc, grpc-svc
		t.Errorf("the pid file names %v, want etcd, kube-apiserver, the controller, the proxy and both examples", pids)
	}
	return pids
}

func port(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
