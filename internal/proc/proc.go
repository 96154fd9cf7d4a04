// Package proc runs the slugway binaries as child processes, for `make run` and the
// end-to-end tests: each in its own session and process group, its output in a log file, stopped
// with SIGTERM (then SIGKILL), and killed by the kernel if the parent dies first.
package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a running child process.
type Proc struct {
	Name string
	Log  string // path of the file holding its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs bin with args and extra environment variables, logging to logDir/name.log.
// If tee is not nil, output goes there too.
func Start(name, logDir string, env []string, tee io.Writer, bin string, args ...string) (*Proc, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out io.Writer = f
	if tee != nil {
		out = io.MultiWriter(f, tee)
	}
	cmd.Stdout, cmd.Stderr = out, out
	// A session of its own (which is also a process group of its own, for Stop), as if
	// started from a terminal of its own. The kernel's autogroup scheduler (on by default)
	// shares CPU time between sessions first, so children left in the parent's session
	// were scheduled as one group, unlike the same binary started by hand or nginx: make
	// run's proxy measured 1.11x a hand-started one's req/s at 0.53x its p99 on a quiet
	// 2-core machine (the shared group with skeleton-svc helped), and slower under the
	// load issue #12 reported. In sessions of their own the two agree (1.03-1.07x req/s,
	// 0.99-1.01x p99; docs/benchmarks.md, "The proxy as make run starts it").
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs it.
func (p *Proc) Stop(grace time.Duration) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		var ee *exec.ExitError
		if errors.As(p.err, &ee) && ee.ExitCode() == -1 {
			return nil // ended by the signal
		}
		return p.err
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s; killed", p.Name, grace)
	}
}

// Kill ends the process group at once, as a crash would.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// KillMatching SIGKILLs every process whose command line contains substr, and returns their
// pids. `make run` uses it to clear a control plane left behind by a crashed run.
func KillMatching(substr string) []int {
	var killed []int
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	self := os.Getpid()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), substr) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil || pid == self {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}
