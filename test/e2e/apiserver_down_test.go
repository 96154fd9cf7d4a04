package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/slugway/slugway/test/harness"
)

// Stop the apiserver: the proxy keeps serving from its last route table. This ends
// the control plane, so TestMain runs it after every other test (see lastTest).
func TestAPIServerDownProxyKeepsServing(t *testing.T) {
	walkthroughReady(t)
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
