package node_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// load is a steady HTTP/1.1 keep-alive load, written like wrk's: one request at a time per
// connection, no retries, and every error counted. Go's http.Transport would silently resend
// a GET whose kept-alive connection the server had just closed, hiding exactly the failures
// a rolling update causes for clients that do not; so this reads responses straight off the
// connection. A response with "Connection: close" is a clean end: the worker reconnects.
type load struct {
	addr, path string
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       map[string]int // failure kind -> count
}

// svcNet is the service network hack/node.sh routes to its bridge; pods are in podNet.
// Load may target only these (or loopback): traffic never leaves the machine.
var (
	svcNet = netip.MustParsePrefix("10.96.0.0/12")
	podNet = netip.MustParsePrefix("10.244.0.0/24")
)

func startLoad(t *testing.T, addr, path string, workers int) *load {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !svcNet.Contains(ap.Addr()) && !podNet.Contains(ap.Addr()) && !ap.Addr().IsLoopback() {
		t.Fatalf("load may target only the node's service or pod network, or loopback; not %s", addr)
	}
	l := &load{addr: addr, path: path, stop: make(chan struct{}), errs: map[string]int{}}
	for range workers {
		l.wg.Go(l.worker)
	}
	return l
}

func (l *load) fail(kind string) {
	l.failed.Add(1)
	l.mu.Lock()
	l.errs[kind]++
	l.mu.Unlock()
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *load) worker() {
	req := []byte("GET " + l.path + " HTTP/1.1\r\nHost: node-suite\r\nUser-Agent: slugway-node-suite\r\n\r\n")
	for !l.stopped() {
		c, err := net.DialTimeout("tcp", l.addr, 2*time.Second)
		if err != nil {
			l.fail("dial: " + err.Error())
			time.Sleep(20 * time.Millisecond)
			continue
		}
		br := bufio.NewReader(c)
		for !l.stopped() {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(req); err != nil {
				l.fail(fmt.Sprintf("write: %T", err))
				break
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				l.fail("read: " + err.Error())
				break
			}
			_, err = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				l.fail("body: " + err.Error())
				break
			}
			if resp.StatusCode != http.StatusOK {
				l.fail(fmt.Sprintf("status %d", resp.StatusCode))
			} else {
				l.ok.Add(1)
			}
			if resp.Close {
				break
			}
		}
		_ = c.Close()
	}
}

// finish stops the load and returns the counts.
func (l *load) finish() (ok, failed int64, kinds map[string]int) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.failed.Load(), l.errs
}
