package controllers_test

import (
	"testing"

	"github.com/slugway/slugway/internal/testenv"
)

// env is one real kube-apiserver and etcd shared by this package's tests. The
// controller runs without webhooks here: these tests are about reconciliation,
// including states (an unclaimed slug, a URL conflict) that admission would refuse.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, testenv.Suite{}) }
