package netguard

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// everythingIsMetadata resolves every name to the metadata address, so a URL can pass
// CheckURL only through an IP literal, which the fuzz target then checks independently.
type everythingIsMetadata struct{}

func (everythingIsMetadata) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
}

// FuzzCheckURL: CheckURL never panics, and whatever it accepts is an absolute http(s)
// URL with a host, no userinfo or fragment, whose host is an IP literal outside the
// default deny-list and not loopback (judged by net.IP, a second parser). Seeds are in
// testdata/fuzz/FuzzCheckURL; run with `go test -fuzz=FuzzCheckURL -fuzztime=30s ./netguard`.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"http://203.0.113.7:8080/api",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::ffff:169.254.169.254]/",
		"http://[fd00:ec2::254]/",
		"http://[fe80::1%25eth0]:80/",
		"http://0x7f.1/",
		"http://127.0.0.1:80@169.254.169.254/",
		"http://203.0.113.7#@169.254.169.254/",
		"HTTP://203.0.113.7/",
		"http:203.0.113.7",
		"//203.0.113.7/",
		"http://[::]/",
	} {
		f.Add(s)
	}
	g, err := New(DefaultDeny, false)
	if err != nil {
		f.Fatal(err)
	}
	g.Resolver = everythingIsMetadata{}
	f.Fuzz(func(t *testing.T, raw string) {
		if err := g.CheckURL(context.Background(), raw); err != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted %q, which url.Parse rejects: %v", raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("accepted %q with scheme %q", raw, u.Scheme)
		}
		if u.User != nil || strings.Contains(raw, "#") || u.Hostname() == "" {
			t.Fatalf("accepted %q: userinfo %v, fragment or empty host %q", raw, u.User, u.Hostname())
		}
		host := u.Hostname()
		if i := strings.IndexByte(host, '%'); i >= 0 {
			host = host[:i]
		}
		ip := net.ParseIP(host)
		if ip == nil {
			t.Fatalf("accepted %q, whose host %q is not an IP literal, though every name resolves to a denied address", raw, u.Hostname())
		}
		meta := net.IPNet{IP: net.ParseIP("169.254.0.0"), Mask: net.CIDRMask(16, 32)}
		if ip.IsLoopback() || ip.IsUnspecified() || meta.Contains(ip) || ip.Equal(net.ParseIP("fd00:ec2::254")) {
			t.Fatalf("accepted %q, whose address %s is denied", raw, ip)
		}
	})
}
