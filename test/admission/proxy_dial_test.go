package admission_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/netguard"
	"github.com/slugway/slugway/proxy"
	"github.com/slugway/slugway/proxy/routes"
)

// TestProxyRefusesRebindingAtDial: the proxy dials through the SSRF guard (as
// `slugway proxy` wires it), so once an instance's host name resolves to a denied
// address the proxy stops connecting to it and answers 502, although that address
// serves. (127.0.0.2 stands in for a metadata server: it is denied here and listens.)
func TestProxyRefusesRebindingAtDial(t *testing.T) {
	var hits atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Connection", "close") // every request dials anew
		io.WriteString(w, "backend")
	})}
	denied, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	_, port, _ := net.SplitHostPort(denied.Addr().String())
	allowed, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Skipf("port %s taken on 127.0.0.1: %v", port, err)
	}
	go srv.Serve(denied)
	go srv.Serve(allowed)
	defer srv.Close()

	g, err := netguard.New(append([]string{"127.0.0.2/32"}, netguard.DefaultDeny...), true)
	if err != nil {
		t.Fatal(err)
	}
	g.Resolver = resolver
	resolver.set("proxied.test", "127.0.0.1")
	h := proxy.NewHandler(proxy.Options{Dial: g.DialContext, MaxRetries: -1})
	h.SetTable(&routes.Table{Routes: map[string]*routes.Route{"dial-svc": {
		Slug:      "dial-svc",
		Endpoints: []routes.Endpoint{{Key: "team-a/dial-1", Scheme: "http", Host: "proxied.test:" + port, Health: slugwayv1.HealthHealthy}},
	}}})
	front := httptest.NewServer(h)
	defer front.Close()

	get := func() int {
		t.Helper()
		resp, err := http.Get(front.URL + "/dial-svc/x")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK || hits.Load() != 1 {
		t.Fatalf("before rebinding: status %d, backend hits %d; want 200 and 1", code, hits.Load())
	}
	resolver.set("proxied.test", "127.0.0.2")
	if code := get(); code != http.StatusBadGateway || hits.Load() != 1 {
		t.Fatalf("after rebinding to a denied address: status %d, backend hits %d; want 502 and no request through", code, hits.Load())
	}
}
