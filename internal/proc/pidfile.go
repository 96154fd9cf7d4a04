package proc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// PidFile records the processes a run started (one "pid start-time name" line
// each), so that the next run can stop exactly those if this one died without
// stopping them. The start time (from /proc/<pid>/stat) tells a recorded process
// from a later one that got its pid.
type PidFile struct{ Path string }

// Add records the running process pid under name.
func (f PidFile) Add(name string, pid int) error {
	start, err := startTime(pid)
	if err != nil {
		return fmt.Errorf("recording %s (pid %d): %w", name, pid, err)
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
		return err
	}
	w, err := os.OpenFile(f.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%d %d %s\n", pid, start, name)
	return errors.Join(err, w.Close())
}

// KillRecorded SIGKILLs the recorded processes that still run, removes the file and
// returns the pids killed. ok is false when there was no file to read.
func (f PidFile) KillRecorded() (killed []int, ok bool, err error) {
	r, err := os.Open(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var pid int
		var start uint64
		if _, err := fmt.Sscanf(sc.Text(), "%d %d", &pid, &start); err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		if now, err := startTime(pid); err != nil || now != start {
			continue // gone, or its pid belongs to another process now
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	if err := sc.Err(); err != nil {
		return killed, true, err
	}
	return killed, true, f.Remove()
}

// Remove deletes the file: everything recorded was stopped.
func (f PidFile) Remove() error {
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Children returns the pids of this process's children whose command name (comm) is name.
func Children(name string) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == name {
				out = append(out, pid)
			}
		}
	}
	return out
}

// startTime is the process's start time in clock ticks since boot (field 22 of
// /proc/<pid>/stat, counted after the command name, which may hold spaces).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64) // field 22 overall; fields[0] is field 3
}
