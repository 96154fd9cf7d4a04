package slugpath

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		target, path, query string
		hasQuery            bool
		err                 *Error
	}{
		{target: "/", path: "/"},
		{target: "/grpc.health.v1.Health/Check", path: "/grpc.health.v1.Health/Check"},
		{target: "/skeleton-svc/hello?a=1&a=2", path: "/skeleton-svc/hello", query: "a=1&a=2", hasQuery: true},
		{target: "/Upper/%41%2Fb?", path: "/Upper/%41%2Fb", hasQuery: true},
		{target: "//x", path: "//x"},
		{target: "/?a", path: "/", query: "a", hasQuery: true},
		{target: "/..a/...", path: "/..a/..."},
		{target: "", err: ErrNotOrigin},
		{target: "*", err: ErrNotOrigin},
		{target: "http://host/x", err: ErrNotOrigin},
		{target: "/..", err: ErrDotSegment},
		{target: "/./x", err: ErrDotSegment},
		{target: "/%2e%2E/x", err: ErrDotSegment},
		{target: "/a/..?x", err: ErrDotSegment},
		{target: "/a%2F..", err: ErrDotSegment},
		{target: "/a\\..", err: ErrDotSegment},
		{target: "/%zz", err: ErrBadEscape},
		{target: "/a\x00", err: ErrControl},
	} {
		path, query, hasQuery, err := ParseTarget(tc.target)
		if err != tc.err || path != tc.path || query != tc.query || hasQuery != tc.hasQuery {
			t.Errorf("ParseTarget(%q) = %q, %q, %v, %v; want %q, %q, %v, %v",
				tc.target, path, query, hasQuery, err, tc.path, tc.query, tc.hasQuery, tc.err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = ParseTarget("/grpc.testing.TestService/UnaryCall?x=1") }); n != 0 {
		t.Errorf("ParseTarget allocates %v times", n)
	}
}

// FuzzParseTarget: ParseTarget agrees with Parse on everything after a slug
// segment, so host routing applies exactly path routing's checks to the path.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"/", "/grpc.health.v1.Health/Check", "/a/../b", "/%2e", "/x?y", "/a\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		path, query, hasQuery, err := ParseTarget(target)
		if err == nil && (!strings.HasPrefix(target, path) || (hasQuery && path+"?"+query != target) || (!hasQuery && path != target)) {
			t.Fatalf("ParseTarget(%q) = %q, %q, %v: does not spell the target", target, path, query, hasQuery)
		}
		if !strings.HasPrefix(target, "/") {
			return
		}
		_, p2, q2, h2, err2 := Parse("/s" + target)
		if err != err2 || (err == nil && (p2 != "/s"+path || q2 != query || h2 != hasQuery)) {
			t.Fatalf("ParseTarget(%q) = %q, %v but Parse(/s+target) = %q, %v", target, path, err, p2, err2)
		}
	})
}
