package slugpath

import (
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		target            string
		slug, path, query string
		hasQuery          bool
		err               *Error
	}{
		{target: "/svc", slug: "svc", path: "/svc"},
		{target: "/svc/", slug: "svc", path: "/svc/"},
		{target: "/skeleton-svc/hello?a=1&a=2", slug: "skeleton-svc", path: "/skeleton-svc/hello", query: "a=1&a=2", hasQuery: true},
		{target: "/svc/a%2Fb%20c/%E2%82%AC?x=%2F", slug: "svc", path: "/svc/a%2Fb%20c/%E2%82%AC", query: "x=%2F", hasQuery: true},
		{target: "/svc?", slug: "svc", path: "/svc", hasQuery: true},
		{target: "/svc/..a/a../...", slug: "svc", path: "/svc/..a/a../..."},
		{target: "/svc/x?../..", slug: "svc", path: "/svc/x", query: "../..", hasQuery: true},
		{target: "/0/", slug: "0", path: "/0/"},
		{target: "/", err: ErrNoSlug},
		{target: "//svc", err: ErrNoSlug},
		{target: "/?a=1", err: ErrNoSlug},
		{target: "", err: ErrNotOrigin},
		{target: "*", err: ErrNotOrigin},
		{target: "http://host/svc/x", err: ErrNotOrigin},
		{target: "host:443", err: ErrNotOrigin},
		{target: "/a%2Fb/x", err: ErrEncodedSlug},
		{target: "/%2e%2e/x", err: ErrEncodedSlug},
		{target: "/sv%63/x", err: ErrEncodedSlug},
		{target: "/../x", err: ErrDotSegment},
		{target: "/./x", err: ErrDotSegment},
		{target: "/Svc/x", err: ErrBadSlug},
		{target: "/-svc", err: ErrBadSlug},
		{target: "/svc-", err: ErrBadSlug},
		{target: "/a.b/x", err: ErrBadSlug},
		{target: "/a\\b/x", err: ErrBadSlug},
		{target: "/" + strings.Repeat("a", 64), err: ErrBadSlug},
		{target: "/" + strings.Repeat("a", 63), slug: strings.Repeat("a", 63), path: "/" + strings.Repeat("a", 63)},
		{target: "/svc/../other", err: ErrDotSegment},
		{target: "/svc/..", err: ErrDotSegment},
		{target: "/svc/./x", err: ErrDotSegment},
		{target: "/svc/%2e%2e/x", err: ErrDotSegment},
		{target: "/svc/.%2E/x", err: ErrDotSegment},
		{target: "/svc/%2E", err: ErrDotSegment},
		{target: "/svc/x/..?a", err: ErrDotSegment},
		{target: "/svc/%zz", err: ErrBadEscape},
		{target: "/svc/%2", err: ErrBadEscape},
		{target: "/svc/a%2F../x", err: ErrDotSegment},
		{target: "/svc/%2F..%2F..%2F..", err: ErrDotSegment},
		{target: "/svc/x\\..", err: ErrDotSegment},
		{target: "/svc/x%5c%2e", err: ErrDotSegment},
		{target: "/svc/a\x00b", err: ErrControl},
		// Dot segments behind path parameters: Tomcat, Jetty and Spring drop
		// ";..." from a segment before resolving dots, so these are ".." and ".".
		{target: "/svc/..;/x", err: ErrDotSegment},
		{target: "/svc/..;/..;/x", err: ErrDotSegment},
		{target: "/svc/.;/x", err: ErrDotSegment},
		{target: "/svc/..;", err: ErrDotSegment},
		{target: "/svc/x/..;jsessionid=abc/y", err: ErrDotSegment},
		{target: "/svc/..;a=b;c=d", err: ErrDotSegment},
		{target: "/svc/%2e%2e;/x", err: ErrDotSegment},
		{target: "/svc/%2E%2E;/x", err: ErrDotSegment},
		{target: "/svc/%2E.;/x", err: ErrDotSegment},
		{target: "/svc/.%2e;x/y", err: ErrDotSegment},
		{target: "/svc/..%3b/x", err: ErrDotSegment},
		{target: "/svc/..%3B/x", err: ErrDotSegment},
		{target: "/svc/%2e%3b/x", err: ErrDotSegment},
		{target: "/svc/..;\\x", err: ErrDotSegment},
		{target: "/svc/..;%2Fx", err: ErrDotSegment},
		{target: "/svc/..;?x", err: ErrDotSegment},
		{target: "/..;/svc/x", err: ErrDotSegment},
		{target: "/.;/svc/x", err: ErrDotSegment},
		{target: "/svc;x/y", err: ErrBadSlug},
		{target: "/svc/..;%zz", err: ErrDotSegment},
		{target: "/svc/x;%zz", err: ErrBadEscape},
		{target: "/svc/x;a\x01", err: ErrControl},
		// Parameters that are not behind a dot segment are the instance's business.
		{target: "/svc/a;b/c", slug: "svc", path: "/svc/a;b/c"},
		{target: "/svc/x;..", slug: "svc", path: "/svc/x;.."},
		{target: "/svc/x;../y", slug: "svc", path: "/svc/x;../y"},
		{target: "/svc/;../y", slug: "svc", path: "/svc/;../y"},
		{target: "/svc/...;/y", slug: "svc", path: "/svc/...;/y"},
		{target: "/svc/a.;/y", slug: "svc", path: "/svc/a.;/y"},
		{target: "/svc/;/y", slug: "svc", path: "/svc/;/y"},
		{target: "/svc/x;jsessionid=1?a=..;", slug: "svc", path: "/svc/x;jsessionid=1", query: "a=..;", hasQuery: true},
		{target: "/svc/a\x7fb", err: ErrControl},
	} {
		slug, path, query, hasQuery, err := Parse(tc.target)
		if err != tc.err || slug != tc.slug || path != tc.path || query != tc.query || hasQuery != tc.hasQuery {
			t.Errorf("Parse(%q) = %q, %q, %q, %v, %v; want %q, %q, %q, %v, %v",
				tc.target, slug, path, query, hasQuery, err, tc.slug, tc.path, tc.query, tc.hasQuery, tc.err)
		}
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _, _, _, _ = Parse("/skeleton-svc/hello/world?a=1&a=2") }); n != 0 {
		t.Fatalf("Parse allocates %v times per call; the hot path must not", n)
	}
}

// FuzzParse checks the invariants the proxy relies on, for any input: the slug is
// a DNS label, the path is a prefix of the target beginning with "/<slug>", the
// target is path + ["?" + query], and no accepted path resolves a dot segment.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/svc/hello?a=1&a=2", "/a%2Fb", "/svc/%2e%2e/x", "/svc/..", "//", "/svc/a%2Fb%20c", "*", "http://h/x", "/svc/..;/x", "/svc/%2E%2e%3Bjsessionid=1/x", "/svc/x;../y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		slug, path, query, hasQuery, err := Parse(target)
		if err != nil {
			if err.Status != 400 && err.Status != 404 {
				t.Fatalf("status %d", err.Status)
			}
			return
		}
		if checkSlug(slug) != nil {
			t.Fatalf("accepted slug %q", slug)
		}
		if !strings.HasPrefix(path, "/"+slug) || (len(path) > len(slug)+1 && path[len(slug)+1] != '/') {
			t.Fatalf("path %q does not start with the slug segment %q", path, slug)
		}
		rebuilt := path
		if hasQuery {
			rebuilt += "?" + query
		}
		if rebuilt != target {
			t.Fatalf("%q split into %q + %q", target, path, query)
		}
		if strings.ContainsRune(path, '?') {
			t.Fatalf("path %q holds a '?'", path)
		}
		dec, uerr := url.PathUnescape(path)
		if uerr != nil {
			t.Fatalf("accepted a path with bad escapes: %q", path)
		}
		// Decoded, with '\\' read as '/' and path parameters dropped as Tomcat
		// does (";..." up to the segment's end), no segment may be a dot segment.
		for _, seg := range strings.Split(strings.ReplaceAll(dec, "\\", "/"), "/") {
			seg, _, _ = strings.Cut(seg, ";")
			if seg == "." || seg == ".." {
				t.Fatalf("accepted a dot segment in %q", path)
			}
		}
	})
}
