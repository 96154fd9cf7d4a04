package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Suite says what a test package's control plane needs.
type Suite struct {
	// Webhooks installs the admission webhook configurations.
	Webhooks bool
	// Controller runs the real controller in-process for the whole package.
	Controller bool
	// Setup runs once the control plane (and controller) are up, e.g. to apply RBAC.
	Setup func(ctx context.Context, env *Env) error
}

// Main is a package's TestMain: it starts the control plane (and the controller) into
// *env, runs the tests, stops everything and exits with the tests' code.
func Main(m interface{ Run() int }, env **Env, s Suite) {
	code, err := run(m, env, s)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m interface{ Run() int }, envp **Env, s Suite) (int, error) {
	env, err := Start(s.Webhooks)
	if err != nil {
		return 0, err
	}
	*envp = env
	defer func() { _ = env.Stop() }()
	if s.Controller {
		stop, err := env.StartController(env.ControllerOptions())
		if err != nil {
			return 0, err
		}
		defer stop()
	}
	if s.Setup != nil {
		if err := s.Setup(context.Background(), env); err != nil {
			return 0, err
		}
	}
	return m.Run(), nil
}

// Eventually polls cond every 50ms until it returns nil, and fails the test with cond's
// last error if that does not happen within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if last = cond(ctx); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %v", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SyncBuffer is a bytes.Buffer that a child process and a test may use at once: the
// process writes its output, the test reads what it said so far.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
