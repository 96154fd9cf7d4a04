package hostroute

import (
	"slices"
	"strings"
	"testing"
)

func mustNew(t testing.TB, ds ...string) *Domains {
	t.Helper()
	d, err := New(ds)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestHost(t *testing.T) {
	d := mustNew(t, "localhost", "Example.COM.", "svc.example.com", "slugway.internal")
	for _, tc := range []struct {
		host string
		slug string
		k    Kind
	}{
		{"skeleton-svc.localhost", "skeleton-svc", Slug},
		{"skeleton-svc.localhost:8080", "skeleton-svc", Slug},
		{"skeleton-svc.localhost:", "skeleton-svc", Slug},
		{"skeleton-svc.localhost.", "skeleton-svc", Slug},
		{"skeleton-svc.localhost.:443", "skeleton-svc", Slug},
		{"Skeleton-SVC.LocalHost", "skeleton-svc", Slug},
		{"grpc-svc.slugway.internal:80", "grpc-svc", Slug},
		{"0.localhost", "0", Slug},
		{strings.Repeat("a", 63) + ".localhost", strings.Repeat("a", 63), Slug},
		{"a.example.com", "a", Slug},
		{"a.svc.example.com", "a", Slug}, // the longest domain decides
		{"svc.example.com", "", Path},    // a configured domain is never a slug of a shorter one
		{"localhost", "", Path},          // the bare domain: path routing
		{"localhost:8080", "", Path},
		{"localhost.", "", Path},
		{"127.0.0.1:8080", "", Path},
		{"[::1]:8080", "", Path},
		{"[::1]", "", Path},
		{"::1", "", Path},
		{"", "", Path},
		{"a.other.org", "", Path},
		{"alocalhost", "", Path},       // a suffix, not a domain
		{"a.localhost:80x", "", Path},  // not a port
		{"a.localhost:-1", "", Path},   // not a port
		{"a.localhost..", "", Path},    // two trailing dots: not a host name
		{".localhost", "", Path},       // no label
		{"x.y.localhost", "", NoSlug},  // two labels
		{"a_b.localhost", "", NoSlug},  // not a DNS label
		{"-a.localhost", "", NoSlug},   // not a DNS label
		{"a-.localhost", "", NoSlug},   // not a DNS label
		{"..localhost", "", NoSlug},    // an empty label
		{"%61.localhost", "", NoSlug},  // nothing is decoded
		{"a%2e.localhost", "", NoSlug}, // nothing is decoded
		{strings.Repeat("a", 64) + ".localhost", "", NoSlug},
		{"a.localhost.example.org", "", Path},
		{"a.localho\u017ft", "", Path}, // "ſ" folds to "s" in Unicode, not in host names
	} {
		slug, k := d.Host(tc.host)
		if slug != tc.slug || k != tc.k {
			t.Errorf("Host(%q) = %q, %v; want %q, %v", tc.host, slug, k, tc.slug, tc.k)
		}
	}
}

func TestNoDomains(t *testing.T) {
	var d *Domains
	if slug, k := d.Host("a.localhost"); k != Path || slug != "" {
		t.Errorf("nil Domains routed %q by host", slug)
	}
	if slug, k := d.TLS("a.localhost", "a.localhost"); k != Path || slug != "" {
		t.Errorf("nil Domains routed %q by host on TLS", slug)
	}
	for _, list := range []string{"", " , ,"} {
		d, err := Parse(list)
		if d != nil || err != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil", list, d, err)
		}
	}
}

func TestTLS(t *testing.T) {
	d := mustNew(t, "example.com")
	for _, tc := range []struct {
		sni, host string
		slug      string
		k         Kind
	}{
		{"a.example.com", "a.example.com", "a", Slug},
		{"a.example.com", "A.example.com:443", "a", Slug},
		{"a.example.com", "", "a", Slug},             // no :authority and no Host: the server name decides
		{"a.example.com", "10.0.0.5:443", "a", Slug}, // the host is not host-routed: the server name decides
		{"", "a.example.com", "a", Slug},             // no SNI (a client dialling an IP address): the host decides
		{"10.0.0.5", "a.example.com", "a", Slug},     // clients do not send IPs as SNI, but if one did
		{"proxy.other.org", "a.example.com", "a", Slug},
		{"a.example.com", "b.example.com", "", Misdirected}, // a coalesced connection: 421
		{"x.y.example.com", "a.example.com", "", Misdirected},
		{"a.example.com", "x.y.example.com", "", Misdirected},
		{"x.y.example.com", "", "", NoSlug},
		{"x.y.example.com", "z.w.example.com", "", NoSlug},
		{"", "", "", Path},
		{"proxy.other.org", "proxy.other.org", "", Path},
		{"example.com", "example.com", "", Path},
	} {
		slug, k := d.TLS(tc.sni, tc.host)
		if slug != tc.slug || k != tc.k {
			t.Errorf("TLS(%q, %q) = %q, %v; want %q, %v", tc.sni, tc.host, slug, k, tc.slug, tc.k)
		}
	}
}

func TestNew(t *testing.T) {
	d, err := Parse(" localhost, Example.com., a.b.c ,example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Names(), []string{"example.com", "localhost", "a.b.c"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q (normalized, merged, longest first)", got, want)
	}
	for _, tc := range []struct{ in, msg string }{
		{"*.example.com", "not a pattern"},
		{".example.com", "not a pattern"},
		{"example.com:8080", "without scheme, port or path"},
		{"http://example.com", "without scheme, port or path"},
		{"[::1]", "without scheme, port or path"},
		{"127.0.0.1", "IP addresses"},
		{"a..b", "is not a DNS label"},
		{"a_b.com", "is not a DNS label"},
		{"-a.com", "is not a DNS label"},
		{strings.Repeat("a", 64) + ".com", "is not a DNS label"},
		{strings.Repeat("abcdefg.", 24) + "com", "longer than"},
	} {
		_, err := New([]string{tc.in})
		if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("New(%q): %v, want an error naming it and saying %q", tc.in, err, tc.msg)
		}
	}
}

func TestHostAllocatesNothing(t *testing.T) {
	d := mustNew(t, "localhost", "example.com")
	for _, host := range []string{"skeleton-svc.localhost:8080", "a.b.example.com", "127.0.0.1:8080", "example.com"} {
		if n := testing.AllocsPerRun(100, func() { d.Host(host) }); n != 0 {
			t.Errorf("Host(%q) allocates %v times", host, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { d.TLS("a.example.com", "a.example.com:443") }); n != 0 {
		t.Errorf("TLS allocates %v times", n)
	}
}

// FuzzHost checks the documented properties for any host: a Slug is a valid
// lowercase label that, with a dot and a configured domain, spells the host
// (case, port and one trailing dot aside); case and a port never change the
// answer; and SNI equal to the host changes nothing.
func FuzzHost(f *testing.F) {
	for _, s := range []string{"a.localhost", "A.LOCALHOST:8080", "a.localhost.", "x.y.example.com", "[::1]:80", "a.svc.example.com", "localhost", "%41.localhost", ""} {
		f.Add(s)
	}
	d := mustNew(f, "localhost", "example.com", "svc.example.com")
	f.Fuzz(func(t *testing.T, host string) {
		slug, k := d.Host(host)
		switch k {
		case Slug:
			if !isLDHLabel(slug) || strings.ToLower(slug) != slug {
				t.Fatalf("Host(%q): slug %q is not a lowercase DNS label", host, slug)
			}
			name, _ := hostName(host)
			name = strings.ToLower(name)
			ok := false
			for _, dom := range d.names {
				ok = ok || name == slug+"."+dom
			}
			if !ok {
				t.Fatalf("Host(%q) = %q: not <slug>.<domain>", host, slug)
			}
		case NoSlug, Path:
			if slug != "" {
				t.Fatalf("Host(%q) = %q, %v: a slug without Slug", host, slug, k)
			}
		default:
			t.Fatalf("Host(%q): kind %v", host, k)
		}
		if s2, k2 := d.Host(asciiUpper(host)); s2 != slug || k2 != k {
			t.Fatalf("Host(%q) = %q, %v but Host(upper) = %q, %v", host, slug, k, s2, k2)
		}
		if !strings.ContainsAny(host, ":[") {
			if s2, k2 := d.Host(host + ":8080"); s2 != slug || k2 != k {
				t.Fatalf("Host(%q) = %q, %v but with a port %q, %v", host, slug, k, s2, k2)
			}
		}
		if s2, k2 := d.TLS(host, host); s2 != slug || k2 != k {
			t.Fatalf("Host(%q) = %q, %v but TLS with the same SNI %q, %v", host, slug, k, s2, k2)
		}
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}
