package controllers_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/slugway/slugway/internal/testenv"
)

// env is one real kube-apiserver and etcd shared by this package's tests. The
// controller runs without webhooks here: these tests are about reconciliation,
// including states (an unclaimed slug, a URL conflict) that admission would refuse.
var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.Start(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// eventually polls cond until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func(ctx context.Context) error) {
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
