package dashboard

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeSource struct {
	slugs []Slug
	insts map[string][]Instance
	table Table
}

func (f *fakeSource) Slugs() []Slug { return f.slugs }
func (f *fakeSource) Table() Table  { return f.table }
func (f *fakeSource) Slug(name string) (Slug, []Instance, bool) {
	for _, s := range f.slugs {
		if s.Name == name {
			return s, f.insts[name], true
		}
	}
	return Slug{}, nil, false
}

func serve(t *testing.T, src Source, rec *Recorder) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", Handler("/dashboard/", src, rec))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func get[T any](t *testing.T, url string, wantCode int) T {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v T
	if resp.StatusCode != wantCode {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d, want %d: %s", url, resp.StatusCode, wantCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return v
}

func thousandSlugs() *fakeSource {
	f := &fakeSource{insts: map[string][]Instance{}, table: Table{Slugs: 1000, SwappedAt: time.Now().Add(-3 * time.Second), LastPropagation: 12 * time.Millisecond, Builds: 7}}
	for i := range 1000 {
		name := fmt.Sprintf("svc-%04d", i)
		f.slugs = append(f.slugs, Slug{Name: name, DisplayName: fmt.Sprintf("Service %d", i), Owner: fmt.Sprintf("team-%d", i%10), Ready: "True", Routable: 1, Total: 1})
		f.insts[name] = []Instance{{Namespace: "b", Name: name + "-2", URL: "http://10.0.0.2"}, {Namespace: "a", Name: name + "-1", URL: "http://10.0.0.1"}}
	}
	return f
}

func TestOverviewSearchSortAndLimit(t *testing.T) {
	f := thousandSlugs()
	rec := NewRecorder()
	for range 5 {
		rec.Observe("svc-0500", 200, time.Millisecond)
	}
	rec.Observe("svc-0007", 503, time.Millisecond)
	c := newClock(time.Now())
	rec.now = c.now
	c.add(time.Second) // the requests' second is complete
	s := serve(t, f, rec)

	o := get[Overview](t, s.URL+"/dashboard/api/overview?limit=50", 200)
	if o.Slugs != 1000 || o.Matched != 1000 || len(o.Rows) != 50 || o.Rows[0].Name != "svc-0000" {
		t.Fatalf("overview: %d slugs, %d matched, %d rows, first %q", o.Slugs, o.Matched, len(o.Rows), o.Rows[0].Name)
	}
	if len(o.Rows[0].Stats.Spark) != 60 {
		t.Fatalf("a listed row carries its 60-second sparkline: %v", o.Rows[0].Stats.Spark)
	}
	if o.Table.Builds != 7 || o.Table.AgeSeconds < 2 || o.Table.LastPropagationSeconds != 0.012 {
		t.Fatalf("table: %+v", o.Table)
	}

	o = get[Overview](t, s.URL+"/dashboard/api/overview?q=TEAM-3&limit=500", 200)
	if o.Matched != 100 {
		t.Fatalf("search by owner, case-insensitive: %d matches, want 100", o.Matched)
	}
	o = get[Overview](t, s.URL+"/dashboard/api/overview?q=Service+42", 200)
	if o.Matched != 11 { // 42, 420..429
		t.Fatalf("search by display name: %d matches, want 11", o.Matched)
	}

	o = get[Overview](t, s.URL+"/dashboard/api/overview?sort=rate&limit=2", 200)
	if o.Rows[0].Name != "svc-0500" || o.Rows[0].Stats.Requests != 5 || o.Rows[1].Name != "svc-0007" {
		t.Fatalf("sorted by rate: %+v", o.Rows)
	}
	if o.Rows[0].Stats.P50 <= 0.5 || o.Rows[0].Stats.P50 >= 1.5 {
		t.Fatalf("p50 of 1ms requests: %v ms", o.Rows[0].Stats.P50)
	}
	o = get[Overview](t, s.URL+"/dashboard/api/overview?sort=errors&limit=1", 200)
	if o.Rows[0].Name != "svc-0007" || o.Rows[0].Stats.Status5xx != 1 {
		t.Fatalf("sorted by errors: %+v", o.Rows)
	}
	o = get[Overview](t, s.URL+"/dashboard/api/overview?q=nothing-matches", 200)
	if o.Rows == nil || len(o.Rows) != 0 {
		t.Fatalf("no match is an empty list, not null: %+v", o.Rows)
	}
}

func TestSlugDetail(t *testing.T) {
	f := thousandSlugs()
	s := serve(t, f, NewRecorder())
	d := get[SlugDetail](t, s.URL+"/dashboard/api/slugs/svc-0003", 200)
	if d.Name != "svc-0003" || d.Owner != "team-3" || len(d.Instances) != 2 || d.Instances[0].Namespace != "a" {
		t.Fatalf("detail (instances sorted by namespace/name): %+v", d)
	}
	e := get[map[string]string](t, s.URL+"/dashboard/api/slugs/nope", 404)
	if e["error"] != "unknown slug" {
		t.Fatalf("unknown slug: %v", e)
	}
}

func TestPageAndAssetsAreSelfContained(t *testing.T) {
	s := serve(t, &fakeSource{}, nil)
	for _, p := range []string{"/dashboard/", "/dashboard/static/app.js", "/dashboard/static/app.css"} {
		resp, err := http.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) == 0 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Fatalf("%s: CSP %q must keep the page to its own origin", p, csp)
		}
		// Nothing may come from elsewhere: no absolute URL other than the SVG namespace name.
		body := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "//cdn") {
			t.Fatalf("%s refers to another origin", p)
		}
	}
	if resp, _ := http.Get(s.URL + "/dashboard/static/nope.js"); resp.StatusCode != 404 {
		t.Fatalf("a missing asset: %d", resp.StatusCode)
	}
}
