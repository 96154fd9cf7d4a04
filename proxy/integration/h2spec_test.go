package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/summerwind/h2spec/config"
	"github.com/summerwind/h2spec/generic"
	"github.com/summerwind/h2spec/hpack"
	"github.com/summerwind/h2spec/http2"
	"github.com/summerwind/h2spec/spec"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy"
)

// h2specExpected are the h2spec cases the proxy's HTTP/2 server (Go's) fails
// today, each with the issue that explains it. Any other failure fails the
// test, and so does an expected failure that passes (then remove it here and
// in docs/security.md).
var h2specExpected = map[string]string{
	// Cleartext only: an invalid preface on the h2c port is an HTTP/1.1
	// request to Go's server, answered with an HTTP/1.1 400 and a close, which
	// h2spec reads as a broken frame. It accepts that on TLS, where the server
	// sends GOAWAY. (summerwind/h2spec#122: a cleartext server may answer 400.)
	"http2/3.5/2 h2c": "summerwind/h2spec#122",
	// Go advertises SETTINGS_MAX_FRAME_SIZE of 1 MiB; h2spec sends a 16 KiB+1
	// HEADERS frame regardless and expects FRAME_SIZE_ERROR (golang/go#25023,
	// deemed an h2spec bug; summerwind/h2spec#102).
	"http2/4.2/3": "golang/go#25023",
	// SETTINGS_INITIAL_WINDOW_SIZE twice in one SETTINGS frame: Go's framer
	// refuses a frame with duplicate settings as a PROTOCOL_ERROR and closes,
	// where RFC 9113 says to apply them in order (golang/go#56760).
	"http2/6.5.3/1": "golang/go#56760",
	// Go's server accepts connection-specific fields (Connection, and TE other
	// than "trailers") in HTTP/2 requests instead of a stream error
	// (golang/go#26321). The proxy drops them as hop-by-hop before forwarding.
	"http2/8.1.2.2/1": "golang/go#26321",
	"http2/8.1.2.2/2": "golang/go#26321",
}

// h2specTimeout is how long h2spec waits for each frame (and for a dial)
// before it calls a case failed. Its default, 2s, is too short for this test on
// a loaded 2-core machine: §5.1.2/1 opens 250 streams, each of which the proxy
// routes to the instance (250 handlers, 250 upstream requests, all in this one
// process with h2spec and the instance), before the 251st is refused. Measured
// with -race, a load average of about 24 and 6 extra busy loops on 2 cores, that
// one case took up to 2.09s from start to its RST_STREAM (118ms without -race),
// so a 2s wait between two frames is within reach under starvation: that is
// the §5.1.2/1 failure seen on the h2c listener, 1 run in 6 (the stream limit
// itself held in every run: 60 of 60 passes, the 251st refused each time).
// A longer wait costs time only in cases that fail (those in h2specExpected
// that end in a timeout); passing cases end at their expected frame.
const h2specTimeout = 6 * time.Second

// h2specRun runs every h2spec case (generic, http2, hpack) against addr and
// returns the IDs ("http2/4.2/3") of the failed ones, with their messages.
func h2specRun(t *testing.T, addr, path string, tls bool) (passed int, failed map[string]string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	c := &config.Config{Host: host, Port: p, Path: path, Timeout: h2specTimeout, MaxHeaderLen: 4000, TLS: tls, Insecure: true}
	failed = map[string]string{}
	var walk func(g *spec.TestGroup)
	walk = func(g *spec.TestGroup) {
		for _, tc := range append(g.Tests, g.StrictTests...) {
			switch r := tc.Result; {
			case r == nil || r.Skipped:
			case r.Failed:
				failed[g.ID()+"/"+strconv.Itoa(r.Sequence)] = tc.Desc + ": " + strings.ReplaceAll(fmt.Sprint(r.Error), "\n", "; ")
			default:
				passed++
			}
		}
		for _, sg := range g.Groups {
			walk(sg)
		}
	}
	for _, g := range []*spec.TestGroup{generic.Spec(), http2.Spec(), hpack.Spec()} {
		g.Test(c)
		walk(g)
	}
	return passed, failed
}

// h2spec (the Go module, github.com/summerwind/h2spec) against the h2c
// listener (prior knowledge, through the fast front end's hand-off) and the
// TLS listener (ALPN h2), routed to a real instance.
func TestH2spec(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	t.Cleanup(be.Close)
	createSlug(t, "h2spec")
	createInstance(t, "h2spec", "h2spec-1", be.URL, slugwayv1.HealthHealthy, "")
	cert, key := selfSigned(t)
	p := startProxy(t, proxy.Options{TLSCertFile: cert, TLSKeyFile: key, TLSListener: listen(t)})
	waitRoute(t, p, "h2spec", 1)

	for _, l := range []struct {
		name, addr string
		tls        bool
	}{{"h2c", p.Addr(), false}, {"TLS", p.TLSAddr(), true}} {
		passed, failed := h2specRun(t, l.addr, "/h2spec/x", l.tls)
		ids := make([]string, 0, len(failed))
		for id := range failed {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		t.Logf("h2spec on the %s listener: %d passed, %d failed %v", l.name, passed, len(failed), ids)
		for _, id := range ids {
			issue, ok := h2specExpected[id]
			if !ok {
				issue, ok = h2specExpected[id+" "+l.name]
			}
			if !ok {
				t.Errorf("%s: h2spec %s failed: %s", l.name, id, failed[id])
			} else {
				t.Logf("%s: h2spec %s fails as expected (%s)", l.name, id, issue)
			}
		}
		for id, issue := range h2specExpected {
			base, only, _ := strings.Cut(id, " ")
			if only != "" && only != l.name {
				continue
			}
			if _, ok := failed[base]; !ok {
				t.Errorf("%s: h2spec %s passes now: remove it from the expected failures (%s) and docs/security.md", l.name, base, issue)
			}
		}
		if passed < 130 {
			t.Errorf("%s: only %d h2spec cases passed", l.name, passed)
		}
	}
}
