package registry

import (
	"errors"
	"strings"
	"testing"
)

// TestURLKeySpellings lists every spelling of one endpoint that issue #14 found
// admitted as a new URL, and the other equivalences URLKey promises: each must have
// the key of the URL it aliases.
func TestURLKeySpellings(t *testing.T) {
	const base = "http://127.0.0.1:19601"
	cases := []struct{ raw, want string }{
		// The spellings from the issue.
		{"http://127.0.0.1:19601", base},
		{"http://127.0.0.1:19601/", base},
		{"http://127.0.0.1:19601//", base},
		{"http://127.0.0.1:019601", base},
		{"http://127.0.0.1:0019601/", base},
		{"http://[::ffff:127.0.0.1]:19601", base},
		{"http://[::ffff:7f00:1]:19601", base},
		{"http://[0:0:0:0:0:ffff:127.0.0.1]:19601", base},
		{"http://127.0.0.1:19601/.", base},
		{"http://127.0.0.1:19601/./", base},
		{"http://127.0.0.1:19601/%2e", base},
		// IPv4-compatible IPv6 and the IPv4 shorthands a resolver accepts.
		{"http://[::127.0.0.1]:19601", base},
		{"http://[::7f00:1]:19601", base},
		{"http://127.1:19601", base},
		{"http://0x7f.0.0.1:19601", base},
		{"http://0177.0.0.1:19601", base},
		{"http://2130706433:19601", base},
		{"http://0x7f000001:19601", base},
		// Case, trailing dot, default ports.
		{"HTTP://Skeleton.Team-A.svc.cluster.local.:8080/api", "http://skeleton.team-a.svc.cluster.local:8080/api"},
		{"http://skeleton.team-a.svc.cluster.local:8080//api//", "http://skeleton.team-a.svc.cluster.local:8080/api"},
		{"http://skeleton.team-a.svc.cluster.local:8080/./api/.", "http://skeleton.team-a.svc.cluster.local:8080/api"},
		{"http://example.test:80/", "http://example.test"},
		{"http://example.test:080", "http://example.test"},
		{"https://example.test:443/x", "https://example.test/x"},
		{"https://example.test:80/x", "https://example.test:80/x"},
		{"http://example.test:443/x", "http://example.test:443/x"},
		// IPv6 in its canonical form.
		{"http://[2001:DB8:0:0:0:0:0:1]:8080", "http://[2001:db8::1]:8080"},
		{"http://[2001:db8::0001]:8080/", "http://[2001:db8::1]:8080"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"http://[::]:8080", "http://[::]:8080"},
		// Percent-encodings: unreserved ones decoded, the rest upper-cased.
		{"http://example.test/%61pi", "http://example.test/api"},
		{"http://example.test/a%2fb", "http://example.test/a%2Fb"},
		// The query is not part of the key: the proxy never sends it.
		{"http://example.test/api?x=1", "http://example.test/api"},
		// Unicode host names as punycode.
		{"http://bücher.test/", "http://xn--bcher-kva.test"},
		{"http://XN--BCHER-KVA.test/", "http://xn--bcher-kva.test"},
	}
	for _, c := range cases {
		got, err := URLKey(c.raw)
		if err != nil {
			t.Errorf("URLKey(%q): %v", c.raw, err)
			continue
		}
		if got != c.want {
			t.Errorf("URLKey(%q) = %q, want %q", c.raw, got, c.want)
		}
	}
}

// TestURLKeyDistinct: URLs that reach different endpoints keep different keys.
func TestURLKeyDistinct(t *testing.T) {
	urls := []string{
		"http://127.0.0.1:19601",
		"http://127.0.0.1:19602",
		"https://127.0.0.1:19601",
		"http://127.0.0.2:19601",
		"http://[::1]:19601",
		"http://127.0.0.1:19601/api",
		"http://127.0.0.1:19601/API",
		"http://127.0.0.1:19601/a/b",
		"http://127.0.0.1:19601/a%2Fb",
		"http://localhost:19601",
		"http://1.2.3.4.5:19601", // not an IPv4 shorthand: a (bad) host name
	}
	seen := map[string]string{}
	for _, u := range urls {
		k, err := URLKey(u)
		if err != nil {
			t.Fatalf("URLKey(%q): %v", u, err)
		}
		if prev, ok := seen[k]; ok {
			t.Errorf("%q and %q share the key %q", prev, u, k)
		}
		seen[k] = u
	}
}

func TestURLKeyRefuses(t *testing.T) {
	cases := []struct{ raw, want string }{
		{"http://127.0.0.1:19601/..", `".."`},
		{"http://127.0.0.1:19601/api/../other", `".."`},
		{"http://127.0.0.1:19601/api/%2e%2e/other", `".."`},
		{"http://127.0.0.1:19601/api/.%2E", `".."`},
		{"http://127.0.0.1:0/", "between 1 and 65535"},
		{"http://127.0.0.1:65536/", "between 1 and 65535"},
		{"http:///path", "no host"},
		{"mailto:a@b", "no host"},
		{"//0", "not http or https"},
		{"ftp://h/", "not http or https"},
	}
	for _, c := range cases {
		k, err := URLKey(c.raw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("URLKey(%q) = %q, %v; want an error saying %s", c.raw, k, err, c.want)
		}
	}
	if _, err := URLKey("http://h/.."); !errors.Is(err, ErrDotDot) {
		t.Errorf("URLKey with ..: %v, want ErrDotDot", err)
	}
	// NormalizeURL falls back to the raw string, which then equals only itself.
	if got := NormalizeURL("http://h/a/../b"); got != "http://h/a/../b" {
		t.Errorf("NormalizeURL of a refused URL = %q, want it unchanged", got)
	}
}

func FuzzURLKey(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:19601//", "http://[::ffff:127.0.0.1]:019601/./a/%2e", "https://bücher.test./x?y", "http://0x7f.1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		k, err := URLKey(raw)
		if err != nil {
			return
		}
		// The key is a fixed point: canonicalizing it again changes nothing.
		k2, err := URLKey(k)
		if err != nil {
			t.Fatalf("URLKey(%q) = %q, whose own key fails: %v", raw, k, err)
		}
		if k2 != k {
			t.Fatalf("URLKey(%q) = %q, but URLKey(%q) = %q", raw, k, k, k2)
		}
	})
}
