package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

// TestHostRoutingBothServers: a host-routed request reaches its slug's
// instance with the path as sent, whichever server answers it, and the front
// end serves it itself.
func TestHostRoutingBothServers(t *testing.T) {
	bothServers(t, func(t *testing.T, serve func(testing.TB, *Handler) string) {
		be, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.RequestURI) })
		// The access log names the slug as path routing does, and the target as sent.
		access := make(chan map[string]any, 16)
		logger := funcr.NewJSON(func(obj string) {
			var m map[string]any
			if json.Unmarshal([]byte(obj), &m) == nil && m["msg"] == "access" {
				access <- m
			}
		}, funcr.Options{})
		h := NewHandler(Options{HostDomains: []string{"localhost"}, AccessLog: true, Logger: logger})
		h.SetTable(table("svc", be.URL))
		base := serve(t, h)
		for _, tc := range []struct {
			host, path string
			code       int
			body       string
			logSlug    string
		}{
			{"svc.localhost:8080", "/pkg.Service/Method", 200, "/pkg.Service/Method", "svc"},
			{"SVC.localhost.", "/svc/hello?x", 200, "/svc/hello?x", "svc"},
			{"nope.localhost", "/svc/x", 404, `{"error":"unknown slug","slug":"nope"}` + "\n", unknownSlug},
			{"a.b.localhost", "/svc/x", 404, "not a slug", unknownSlug},
			{"localhost", "/svc/x", 200, "/svc/x", "svc"},
			{"svc.localhost", "/a/../b", 400, "'..'", ""},
		} {
			req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.body) {
				t.Errorf("%s%s: %d %q, want %d %q", tc.host, tc.path, resp.StatusCode, b, tc.code, tc.body)
			}
			if tc.logSlug == "" {
				continue
			}
			select {
			case m := <-access:
				if m["slug"] != tc.logSlug || m["target"] != tc.path || m["status"] != float64(tc.code) {
					t.Errorf("%s%s: access log %v, want slug %q, target %q, status %d", tc.host, tc.path, m, tc.logSlug, tc.path, tc.code)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s%s: no access log line", tc.host, tc.path)
			}
		}
	})
}

func TestHostRoutingFrontServesItself(t *testing.T) {
	be, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.RequestURI) })
	h := NewHandler(Options{HostDomains: []string{"localhost"}})
	h.SetTable(table("svc", be.URL))
	base := behindFront(t, h)
	req, _ := http.NewRequest(http.MethodGet, base+"/pkg.Service/Method", nil)
	req.Host = "svc.localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := handoffs(t, h); len(n) != 0 || resp.StatusCode != 200 {
		t.Errorf("status %d, hand-offs %v: the front end should serve a host-routed request itself", resp.StatusCode, n)
	}
}

func TestNewRejectsBadHostDomains(t *testing.T) {
	_, err := New(nil, Options{HostDomains: []string{"*.example.com"}})
	if err == nil || !strings.Contains(err.Error(), "--host-domains") || !strings.Contains(err.Error(), "not a pattern") {
		t.Fatalf("New with a pattern as host domain: %v", err)
	}
}
