// Package freeport picks loopback ports for processes a test starts later (the
// proxy, the controller, the examples), which must bind them themselves.
//
// The usual trick, listening on port 0 and closing, returns a port from the
// kernel's ephemeral range, and the kernel may hand it out again before the
// process binds it: to envtest's own port-0 picks (etcd, kube-apiserver, the
// webhook server), to another test's, or to an outgoing connection. TestMakeRun
// failed that way in CI: grpc-svc found its port taken by the webhook server
// envtest had picked after it. So the ports here come from below the ephemeral
// range, which no port-0 bind or connect uses, and each is reserved for a few
// minutes with a marker file, so that test binaries running side by side do
// not pick the same one.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// hold is how long a port stays reserved for the process that picked it: longer
// than any test takes to start what binds it.
const hold = 10 * time.Minute

// Addr returns 127.0.0.1:port, a port nothing listens on, below the ephemeral
// range and not handed out to anyone else within the last ten minutes.
func Addr() (string, error) {
	lo, hi := span()
	dir := filepath.Join(os.TempDir(), "slugway-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", err
	}
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if !reserve(filepath.Join(dir, strconv.Itoa(port))) {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // something else holds it (a server on a fixed port)
		}
		l.Close()
		return addr, nil
	}
	return "", fmt.Errorf("no free port in [%d,%d) after 1000 tries", lo, hi)
}

// span is the range to pick from: the 12,000 ports below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range, 32768 by default), and never under 1024.
func span() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				hi = n
			}
		}
	}
	lo = max(hi-12000, 1024)
	if hi-lo < 1000 { // an unusual range: fall back to the ports just under 32768
		lo, hi = 20000, 32000
	}
	return lo, hi
}

// reserve creates the marker file for a port, or takes over one older than
// hold; it reports whether the port is this process's now.
func reserve(marker string) bool {
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
	if err == nil {
		f.Close()
		return true
	}
	if !errors.Is(err, os.ErrExist) {
		return false
	}
	st, err := os.Stat(marker)
	if err != nil || time.Since(st.ModTime()) < hold {
		return false
	}
	// Stale: whoever removes it first may create it again.
	if os.Remove(marker) != nil {
		return false
	}
	return reserve(marker)
}
