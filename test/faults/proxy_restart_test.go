package faults

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slugway/slugway/test/harness"
)

// A proxy restarted under load: requests in flight finish on SIGTERM, and while the new
// proxy starts no request for an existing slug is answered 404.
func TestProxyRestartUnderLoad(t *testing.T) {
	register(t, "steady", fastHC, okServer(t, "steady").URL)
	waitHealthy(t, "steady", 1, 30*time.Second)

	// A request in flight when SIGTERM arrives completes.
	inflight := make(chan error, 1)
	go func() {
		code, body, err := harness.Get(c.ProxyURL + "/steady/slow")
		if err == nil && (code != http.StatusOK || body != "steady") {
			err = fmt.Errorf("in-flight request got %d %q", code, body)
		}
		inflight <- err
	}()
	time.Sleep(300 * time.Millisecond)

	var codes sync.Map // code -> *atomic.Int64
	var refused atomic.Int64
	stop := harness.Load(c.ProxyURL+"/steady/x", 4, func(code int, _ string, err error) {
		if err != nil {
			refused.Add(1) // the port is closed between the two processes
			time.Sleep(10 * time.Millisecond)
			return
		}
		n, _ := codes.LoadOrStore(code, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	})

	if err := c.Proxy.Stop(20 * time.Second); err != nil {
		t.Fatalf("proxy did not stop cleanly: %v", err)
	}
	if err := <-inflight; err != nil {
		t.Fatalf("request in flight at SIGTERM: %v", err)
	}
	if err := c.StartProxy(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stop()

	summary := map[int]int64{}
	codes.Range(func(k, v any) bool { summary[k.(int)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("answers across the restart: %v; %d connection attempts refused while no proxy listened", summary, refused.Load())
	if summary[http.StatusNotFound] != 0 {
		t.Fatalf("%d requests for an existing slug were answered 404 during the restart", summary[http.StatusNotFound])
	}
	if summary[http.StatusOK] == 0 {
		t.Fatal("no request succeeded")
	}
}
