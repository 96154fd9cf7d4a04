// Package dashboard serves the proxy's live dashboard: every slug with its owner,
// Ready and routable instances, per-slug request and error rates, latency
// percentiles and a sparkline over the last minute, and, for a slug opened on the
// page, its instances with their status, last heartbeat, ejection and requests in
// flight. The page is plain HTML, CSS and JavaScript embedded in the binary; it
// loads nothing else and polls two JSON endpoints once a second.
//
// The package knows nothing of the proxy's internals: it reads a Source (a
// snapshot of the route table and the informer cache, implemented in package
// proxy) and a Recorder, which the proxy feeds with one Observe call per answered
// request. It makes no apiserver calls of its own.
package dashboard

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Source is what the dashboard reads from the proxy. Implementations must be safe
// for concurrent use and answer from memory (the route table and the informer cache).
type Source interface {
	// Slugs returns every slug the proxy knows of, in any order.
	Slugs() []Slug
	// Slug returns one slug and the Instances that name it, and false when the slug is unknown.
	Slug(name string) (Slug, []Instance, bool)
	// Table describes the route table serving now.
	Table() Table
}

// Slug is one claimed slug as the proxy sees it.
type Slug struct {
	Name        string `json:"slug"`
	DisplayName string `json:"displayName"`
	Owner       string `json:"owner"`
	// Ready is the ServiceAccount's Ready condition: "True", "False" or "Unknown".
	Ready       string `json:"ready"`
	ReadyReason string `json:"readyReason,omitempty"`
	// Routable is how many instances the route table sends the slug's traffic to;
	// Total how many Instances name the slug (the controller's count).
	Routable int  `json:"routable"`
	Total    int  `json:"total"`
	Degraded bool `json:"degraded,omitempty"` // routing to Degraded instances: none is Healthy
	Deleting bool `json:"deleting,omitempty"`
}

// Instance is one Instance of a slug, with the proxy's live state for it.
type Instance struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// URL is the instance's spec.url: an internal address (see docs/operations.md).
	URL           string     `json:"url"`
	Status        string     `json:"status"` // Healthy, Degraded, Unreachable, Unknown (or "" before the first probe)
	LastHeartbeat *time.Time `json:"lastHeartbeat,omitempty"`
	// Routed is true when the route table sends traffic to it.
	Routed bool `json:"routed"`
	// EjectedUntil is set while passive health checking keeps it out of rotation.
	EjectedUntil *time.Time `json:"ejectedUntil,omitempty"`
	InFlight     int64      `json:"inFlight"`
	// Reason is the Ready condition's reason, when it is not True.
	Reason string `json:"reason,omitempty"`
}

// Table describes the route table.
type Table struct {
	Slugs int `json:"slugs"`
	// SwappedAt is when the current table started serving (zero before the first).
	SwappedAt time.Time `json:"swappedAt"`
	// LastPropagation is how long the last change took from its watch event to the
	// table serving it (0 until a change arrived after the first table).
	LastPropagation time.Duration `json:"-"`
	Builds          uint64        `json:"builds"`
}

//go:embed static
var static embed.FS

// maxRows bounds the slugs one overview answer lists (the page asks for fewer):
// with 1,000 slugs the page shows the first matches and a search box narrows them.
const maxRows = 500

// Handler serves the dashboard under prefix (for example "/dashboard/"):
//
//	prefix                      the page
//	prefix + "static/..."       its script and stylesheet
//	prefix + "api/overview"     slugs with their figures; ?q= filters by substring of
//	                            slug, display name or owner, ?sort=rate|errors|name, ?limit=
//	prefix + "api/slugs/<slug>" one slug with its instances
func Handler(prefix string, src Source, rec *Recorder) http.Handler {
	sub, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	page, _ := fs.ReadFile(sub, "index.html")
	mux.HandleFunc("GET "+prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	files := http.StripPrefix(prefix+"static/", http.FileServerFS(sub))
	mux.HandleFunc("GET "+prefix+"static/", func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		files.ServeHTTP(w, r)
	})
	d := &server{src: src, rec: rec, now: time.Now}
	mux.HandleFunc("GET "+prefix+"api/overview", d.overview)
	mux.HandleFunc("GET "+prefix+"api/slugs/{slug}", d.slug)
	return mux
}

// secure sets headers that keep the page to itself: no script, style or
// connection other than its own origin, no framing, no sniffing.
func secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

type server struct {
	src Source
	rec *Recorder
	now func() time.Time
}

// SlugRow is a slug with its figures, as the overview lists it.
type SlugRow struct {
	Slug
	Stats Stats `json:"stats"`
}

// Overview is the answer of api/overview.
type Overview struct {
	Now   time.Time     `json:"now"`
	Table TableOverview `json:"table"`
	// Slugs is how many slugs the proxy knows; Matched how many match the query;
	// the rows are the first Limit of those.
	Slugs   int       `json:"slugs"`
	Matched int       `json:"matched"`
	Rows    []SlugRow `json:"rows"`
	// Unknown counts requests that named no known slug (404s and malformed paths).
	Unknown Stats `json:"unknown"`
	// WindowSeconds is the span of every rate and percentile.
	WindowSeconds int `json:"windowSeconds"`
}

// TableOverview is Table for JSON, with durations in seconds.
type TableOverview struct {
	Table
	AgeSeconds             float64 `json:"ageSeconds"`
	LastPropagationSeconds float64 `json:"lastPropagationSeconds"`
}

// UnknownSlug is the slug under which the proxy records requests for no known slug.
const UnknownSlug = "(unknown)"

func (d *server) overview(w http.ResponseWriter, r *http.Request) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 || limit > maxRows {
		limit = maxRows
	}
	sortBy := r.URL.Query().Get("sort")
	slugs := d.src.Slugs()
	known := make(map[string]bool, len(slugs))
	var rows []SlugRow
	for _, s := range slugs {
		known[s.Name] = true
		if q == "" || strings.Contains(strings.ToLower(s.Name), q) || strings.Contains(strings.ToLower(s.DisplayName), q) ||
			strings.Contains(strings.ToLower(s.Owner), q) {
			rows = append(rows, SlugRow{Slug: s, Stats: d.rec.Stats(s.Name, false)})
		}
	}
	d.rec.Retain(func(slug string) bool { return known[slug] || slug == UnknownSlug })
	switch sortBy {
	case "rate":
		slices.SortFunc(rows, func(a, b SlugRow) int {
			return cmpDesc(a.Stats.Requests, b.Stats.Requests, a.Name, b.Name)
		})
	case "errors":
		slices.SortFunc(rows, func(a, b SlugRow) int {
			return cmpDesc(a.Stats.Status4xx+a.Stats.Status5xx, b.Stats.Status4xx+b.Stats.Status5xx, a.Name, b.Name)
		})
	default:
		slices.SortFunc(rows, func(a, b SlugRow) int { return strings.Compare(a.Name, b.Name) })
	}
	matched := len(rows)
	rows = rows[:min(limit, len(rows))]
	for i := range rows {
		rows[i].Stats = d.rec.Stats(rows[i].Name, true)
	}
	if rows == nil {
		rows = []SlugRow{}
	}
	now := d.now()
	t := d.src.Table()
	to := TableOverview{Table: t, LastPropagationSeconds: t.LastPropagation.Seconds()}
	if !t.SwappedAt.IsZero() {
		to.AgeSeconds = now.Sub(t.SwappedAt).Seconds()
	}
	writeJSON(w, http.StatusOK, Overview{
		Now: now, Table: to, Slugs: len(slugs), Matched: matched, Rows: rows,
		Unknown: d.rec.Stats(UnknownSlug, false), WindowSeconds: int(windowSecs),
	})
}

func cmpDesc(a, b uint64, an, bn string) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return strings.Compare(an, bn)
}

// SlugDetail is the answer of api/slugs/<slug>.
type SlugDetail struct {
	SlugRow
	Instances []Instance `json:"instances"`
}

func (d *server) slug(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("slug")
	s, insts, ok := d.src.Slug(name)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown slug", "slug": name})
		return
	}
	row := SlugRow{Slug: s, Stats: d.rec.Stats(name, true)}
	slices.SortFunc(insts, func(a, b Instance) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	if insts == nil {
		insts = []Instance{}
	}
	writeJSON(w, http.StatusOK, SlugDetail{SlugRow: row, Instances: insts})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
