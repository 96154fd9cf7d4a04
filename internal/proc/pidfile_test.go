package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
)

// A recorded child is killed by the next run; a pid whose process changed is left alone.
func TestPidFileKillsExactlyTheRecorded(t *testing.T) {
	f := PidFile{Path: filepath.Join(t.TempDir(), "pids")}
	if _, ok, err := f.KillRecorded(); ok || err != nil {
		t.Fatalf("no file: ok=%v err=%v, want the fallback to be needed", ok, err)
	}
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	if got := Children("sleep"); !slices.Contains(got, child.Process.Pid) {
		t.Fatalf("Children(sleep) = %v, want it to hold %d", got, child.Process.Pid)
	}
	if err := f.Add("sleeper", child.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// Another process, recorded with a start time it does not have: as if it got
	// the pid of a recorded process that ended.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	w, err := os.OpenFile(f.Path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.WriteString(strconv.Itoa(other.Process.Pid) + " 1 reused\n")
	_ = w.Close()

	killed, ok, err := f.KillRecorded()
	if !ok || err != nil {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if !slices.Equal(killed, []int{child.Process.Pid}) {
		t.Fatalf("killed %v, want only the recorded child %d", killed, child.Process.Pid)
	}
	if err := child.Wait(); err == nil {
		t.Fatal("the recorded child was not killed")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("a process whose start time does not match the record was killed: %v", err)
	}
	if _, err := os.Stat(f.Path); !os.IsNotExist(err) {
		t.Fatalf("the pid file is still there: %v", err)
	}
}
