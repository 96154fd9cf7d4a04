package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/slugway/slugway/proxy/routes"
)

// Before its first route table a proxy cannot tell an existing slug from an unknown one:
// it answers 503 with Retry-After, never 404. After the first table, unknown is 404.
func TestStartingProxyAnswers503NotNotFound(t *testing.T) {
	h := NewHandler(Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/some-slug/x", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("before the first table: %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}

	h.SetTable(&routes.Table{Routes: map[string]*routes.Route{}})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/some-slug/x", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("after the first table: %d, want 404 for an unknown slug", rec.Code)
	}
}
