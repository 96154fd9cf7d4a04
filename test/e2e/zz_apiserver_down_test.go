package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/slugway/slugway/test/harness"
)

// Stop the apiserver: the proxy keeps serving from its last route table.
// (File name sorts last: go test runs tests in source order, and this one ends the control plane.)
func TestZZAPIServerDownProxyKeepsServing(t *testing.T) {
	TestWalkthrough(t)
	if err := c.Env.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		code, body, err := harness.Get(c.ProxyURL + "/skeleton-svc/hello")
		if err != nil || code != http.StatusOK {
			t.Fatalf("request %d with the apiserver down: %d %q %v", i, code, body, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
