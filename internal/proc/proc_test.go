package proc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child must run in a session of its own, as if started from a terminal of its own.
// With the kernel's autogroup scheduling (sched_autogroup_enabled=1, the default on most
// distributions) CPU time is shared between sessions first and between processes second,
// so children left in the parent's session share one CPU share: make run's proxy and
// skeleton-svc shared one (docs/benchmarks.md, "The proxy as make run starts it").
func TestStartGivesEachChildItsOwnSessionAndGroup(t *testing.T) {
	dir := t.TempDir()
	p, err := Start("sleeper", dir, nil, nil, "/bin/sh", "-c", "cat /proc/self/autogroup; exec sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	pid := p.Pid()
	pgid, sid := groupAndSession(t, pid)
	_, own := groupAndSession(t, os.Getpid())
	if sid != pid || sid == own {
		t.Errorf("child %d is in session %d (the test's: %d), want a session of its own", pid, sid, own)
	}
	if pgid != pid {
		t.Errorf("child %d is in process group %d, want its own (Stop signals the group)", pid, pgid)
	}
	if ag, err := os.ReadFile("/proc/self/autogroup"); err == nil { // only where the kernel has autogroups
		var child string
		for deadline := time.Now().Add(10 * time.Second); child == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			b, _ := os.ReadFile(filepath.Join(dir, "sleeper.log"))
			child = strings.TrimSpace(string(b))
		}
		if g := strings.Fields(string(ag)); len(g) > 0 && strings.HasPrefix(child, g[0]+" ") {
			t.Errorf("child's autogroup %q is the test's (%q)", child, strings.TrimSpace(string(ag)))
		}
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("child %d still runs after Stop", pid)
	}
}

// groupAndSession reads a process's group and session ids from /proc/<pid>/stat.
func groupAndSession(t *testing.T, pid int) (pgid, sid int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 4 {
		t.Fatalf("unexpected /proc/%d/stat: %q", pid, b)
	}
	pgid, _ = strconv.Atoi(f[2])
	sid, _ = strconv.Atoi(f[3])
	return pgid, sid
}
