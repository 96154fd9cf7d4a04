package netguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers from a table; a host with several answers returns the next one
// on each lookup (the last one repeats), which is how DNS rebinding looks to a client.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]string
	calls   map[string]int
}

func newResolver(answers map[string][][]string) *fakeResolver {
	return &fakeResolver{answers: answers, calls: map[string]int{}}
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(seq)-1)
	r.calls[host]++
	var out []netip.Addr
	for _, s := range seq[i] {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func mustGuard(t testing.TB, deny []string, allowLoopback bool, r Resolver) *Guard {
	t.Helper()
	g, err := New(deny, allowLoopback)
	if err != nil {
		t.Fatal(err)
	}
	g.Resolver = r
	return g
}

func TestNewRejectsBadCIDRs(t *testing.T) {
	for _, bad := range []string{"169.254.0.0/33", "not-a-cidr", "10.0.0.0/", "fe80::1%eth0"} {
		_, err := New([]string{bad}, false)
		if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("New(%q): got %v, want an error naming the entry and saying a CIDR is expected", bad, err)
		}
	}
	g, err := New([]string{" 10.0.0.0/8 ", "", "fd00:ec2::254", "::ffff:192.168.0.0/112"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(g.DenyCIDRs(), ","), "10.0.0.0/8,fd00:ec2::254/128,192.168.0.0/16"; got != want {
		t.Errorf("DenyCIDRs = %s, want %s", got, want)
	}
}

func TestCheckURL(t *testing.T) {
	res := newResolver(map[string][][]string{
		"metadata.evil.test": {{"169.254.169.254"}},
		"mixed.evil.test":    {{"203.0.113.7", "169.254.169.254"}},
		"public.test":        {{"203.0.113.7", "2001:db8::7"}},
		"v6meta.evil.test":   {{"fd00:ec2::254"}},
		"lo.test":            {{"127.0.0.1"}},
	})
	strict := mustGuard(t, DefaultDeny, false, res)
	loose := mustGuard(t, DefaultDeny, true, res)
	custom := mustGuard(t, append([]string{"10.0.0.0/8"}, DefaultDeny...), false, res)

	cases := []struct {
		name    string
		g       *Guard
		url     string
		wantErr string // substring; "" means allowed
	}{
		{"public IP", strict, "http://203.0.113.7:8080/api", ""},
		{"public name", strict, "https://public.test/", ""},
		{"unresolvable name is left to dial time", strict, "http://not-yet.test/", ""},
		{"metadata IP", strict, "http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in the denied range 169.254.0.0/16"},
		{"link-local IP", strict, "http://169.254.10.1:80/", "169.254.0.0/16"},
		{"metadata name", strict, "http://metadata.evil.test/", `host "metadata.evil.test" resolves to 169.254.169.254`},
		{"one of several addresses denied", strict, "http://mixed.evil.test/", "169.254.169.254"},
		{"IPv6 metadata literal", strict, "http://[fd00:ec2::254]/", "fd00:ec2::254/128"},
		{"IPv6 metadata name", strict, "http://v6meta.evil.test/", "fd00:ec2::254"},
		{"IPv4-mapped metadata", strict, "http://[::ffff:169.254.169.254]/", "169.254.169.254 is in the denied range"},
		{"loopback IP refused", strict, "http://127.0.0.1:9000/", "--allow-loopback"},
		{"loopback 127/8 refused", strict, "http://127.1.2.3/", "--allow-loopback"},
		{"IPv6 loopback refused", strict, "http://[::1]:9000/", "--allow-loopback"},
		{"unspecified refused", strict, "http://0.0.0.0:9000/", "--allow-loopback"},
		{"IPv6 unspecified refused", strict, "http://[::]:9000/", "--allow-loopback"},
		{"loopback name refused", strict, "http://lo.test/", `host "lo.test" resolves to 127.0.0.1`},
		{"loopback allowed", loose, "http://127.0.0.1:9000/", ""},
		{"loopback allowed, metadata still denied", loose, "http://169.254.169.254/", "169.254.0.0/16"},
		{"custom CIDR", custom, "http://10.1.2.3/", "denied range 10.0.0.0/8"},
		{"custom CIDR says which flag", custom, "http://10.1.2.3/", "--deny-cidrs"},
		{"ftp", strict, "ftp://203.0.113.7/", `scheme "ftp" is not allowed`},
		{"file", strict, "file:///etc/passwd", `scheme "file" is not allowed`},
		{"relative", strict, "/just/a/path", `scheme "" is not allowed`},
		{"no host", strict, "http:///path", "no host"},
		{"opaque", strict, "http:203.0.113.7", "no host"},
		{"userinfo", strict, "http://user:pw@203.0.113.7/", "userinfo"},
		{"fragment", strict, "http://203.0.113.7/#frag", "fragment"},
		{"empty fragment", strict, "http://203.0.113.7/#", "fragment"},
		{"bad port", strict, "http://203.0.113.7:99999/", "port"},
		{"unparsable", strict, "http://[::1", "not a valid URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.g.CheckURL(context.Background(), tc.url)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckURL(%q) = %v, want allowed", tc.url, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckURL(%q) = %v, want an error containing %q", tc.url, err, tc.wantErr)
			}
		})
	}
}

func TestDeniedErrorIsMatchable(t *testing.T) {
	g := mustGuard(t, DefaultDeny, false, nil)
	err := g.CheckURL(context.Background(), "http://169.254.169.254/")
	var de *DeniedError
	if !errors.As(err, &de) || de.Addr != netip.MustParseAddr("169.254.169.254") || de.Range.String() != "169.254.0.0/16" {
		t.Fatalf("got %#v, want a *DeniedError for 169.254.169.254 in 169.254.0.0/16", err)
	}
	g2 := mustGuard(t, []string{"10.0.0.0/8"}, false, nil)
	if err := g2.Check(netip.MustParseAddr("fe80::1%eth0")); err != nil {
		t.Fatalf("fe80::1 is not in a deny-list without fe80::/10: %v", err)
	}
	if err := g.Check(netip.MustParseAddr("fe80::1%eth0")); err == nil {
		t.Fatal("a zoned address must still match its range")
	}
}

func TestNilGuardAllowsEverything(t *testing.T) {
	var g *Guard
	if err := g.CheckURL(context.Background(), "http://169.254.169.254/"); err != nil {
		t.Fatal(err)
	}
	if err := g.CheckURL(context.Background(), "ftp://x/"); err == nil {
		t.Fatal("a nil guard still checks the URL's shape")
	}
}

// backend returns an httptest server and its port.
func backend(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return srv, port
}

func get(t *testing.T, g *Guard, url string) (string, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: g.DialContext, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestDialContextDialsCheckedAddress(t *testing.T) {
	_, port := backend(t)
	res := newResolver(map[string][][]string{"svc.test": {{"127.0.0.1"}}})
	g := mustGuard(t, DefaultDeny, true, res)
	body, err := get(t, g, "http://svc.test:"+port+"/")
	if err != nil || body != "ok" {
		t.Fatalf("GET through the guard: %q, %v", body, err)
	}
}

func TestDialContextRefusesLoopbackUnlessAllowed(t *testing.T) {
	_, port := backend(t)
	g := mustGuard(t, DefaultDeny, false, nil)
	for _, host := range []string{"127.0.0.1", "localhost", "0.0.0.0"} {
		_, err := get(t, g, "http://"+net.JoinHostPort(host, port)+"/")
		if err == nil || !strings.Contains(err.Error(), "--allow-loopback") {
			t.Errorf("GET %s: %v, want a refusal naming --allow-loopback", host, err)
		}
	}
}

// TestDNSRebindingRefusedAtDial: the name passes admission (it resolves to a public
// address then), and later resolves to the metadata address; the dial must refuse it.
func TestDNSRebindingRefusedAtDial(t *testing.T) {
	_, port := backend(t)
	res := newResolver(map[string][][]string{"rebind.evil.test": {{"203.0.113.9"}, {"169.254.169.254"}}})
	g := mustGuard(t, DefaultDeny, true, res)
	u := "http://rebind.evil.test:" + port + "/"
	if err := g.CheckURL(context.Background(), u); err != nil {
		t.Fatalf("at admission the name is harmless: %v", err)
	}
	_, err := g.DialContext(context.Background(), "tcp", "rebind.evil.test:"+port)
	var de *DeniedError
	if !errors.As(err, &de) || de.Addr.String() != "169.254.169.254" || !strings.Contains(err.Error(), `host "rebind.evil.test" resolves to 169.254.169.254`) {
		t.Fatalf("dial after rebinding: %v, want a DeniedError naming the host and 169.254.169.254", err)
	}
}

// TestDialContextSkipsNothingWhenAnyDenied: a name with one good and one denied address is refused outright.
func TestDialContextRefusesMixedAnswers(t *testing.T) {
	_, port := backend(t)
	res := newResolver(map[string][][]string{"mixed.test": {{"127.0.0.1", "169.254.169.254"}}})
	g := mustGuard(t, DefaultDeny, true, res)
	if _, err := g.DialContext(context.Background(), "tcp", "mixed.test:"+port); err == nil || !strings.Contains(err.Error(), "169.254.169.254") {
		t.Fatalf("got %v, want a refusal naming 169.254.169.254", err)
	}
}

func TestDialContextFallsBackToNextAddress(t *testing.T) {
	_, port := backend(t)
	// 127.0.0.2 answers nothing on this port (connection refused); 127.0.0.1 serves.
	res := newResolver(map[string][][]string{"two.test": {{"127.0.0.2", "127.0.0.1"}}})
	g := mustGuard(t, DefaultDeny, true, res)
	conn, err := g.DialContext(context.Background(), "tcp", "two.test:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != "127.0.0.1:"+port {
		t.Fatalf("connected to %s, want 127.0.0.1:%s", got, port)
	}
}

func TestDialContextErrors(t *testing.T) {
	g := mustGuard(t, DefaultDeny, true, newResolver(map[string][][]string{"v4only.test": {{"127.0.0.1"}}}))
	for _, tc := range []struct{ network, addr, want string }{
		{"unix", "/tmp/sock", `network "unix" is not supported`},
		{"tcp", "no-port", "missing port"},
		{"tcp", "nxdomain.test:80", "no such host"},
		{"tcp6", "v4only.test:80", `has no tcp6 address`},
	} {
		_, err := g.DialContext(context.Background(), tc.network, tc.addr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DialContext(%s, %s) = %v, want %q", tc.network, tc.addr, err, tc.want)
		}
	}
}

func BenchmarkCheckURL(b *testing.B) {
	g := mustGuard(b, append([]string{"10.0.0.0/8", "192.168.0.0/16", "fe80::/10"}, DefaultDeny...), false, newResolver(map[string][][]string{"svc.test": {{"203.0.113.7"}}}))
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if err := g.CheckURL(ctx, fmt.Sprintf("http://svc.test:%d/x", 1+i%60000)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDefaultDenyCoversMetadataEndpoints is the table of issue #14: the metadata
// endpoints of the big clouds, in every spelling an address can take, are refused by
// the default deny-list; their neighbours and ordinary addresses are not.
func TestDefaultDenyCoversMetadataEndpoints(t *testing.T) {
	g := mustGuard(t, DefaultDeny, false, nil)
	cases := []struct {
		addr, rng string // rng "": allowed
	}{
		{"169.254.169.254", "169.254.0.0/16"},        // AWS, GCP, Azure IMDS, OpenStack
		{"::ffff:169.254.169.254", "169.254.0.0/16"}, // IPv4-mapped
		{"::ffff:a9fe:a9fe", "169.254.0.0/16"},
		{"::a9fe:a9fe", "169.254.0.0/16"},       // IPv4-compatible
		{"::169.254.169.254", "169.254.0.0/16"}, // the same, dotted
		{"fd00:ec2::254", "fd00:ec2::254/128"},  // AWS IPv6
		{"FD00:EC2:0:0:0:0:0:254", "fd00:ec2::254/128"},
		{"100.100.100.200", "100.100.100.200/32"}, // Alibaba Cloud
		{"::ffff:100.100.100.200", "100.100.100.200/32"},
		{"::6464:64c8", "100.100.100.200/32"},
		{"168.63.129.16", "168.63.129.16/32"}, // Azure wire server
		{"::a83f:8110", "168.63.129.16/32"},
		{"fe80::1", "fe80::/10"}, // IPv6 link-local
		{"fe80::a9fe:a9fe", "fe80::/10"},
		{"febf:ffff::1", "fe80::/10"},
		{"fe80::1%eth0", "fe80::/10"},
		// Neighbours and ordinary addresses stay reachable.
		{"100.100.100.201", ""},
		{"168.63.129.17", ""},
		{"fec0::1", ""},
		{"fd00:ec2::253", ""},
		{"203.0.113.7", ""},
		{"2001:db8::7", ""},
		{"::ffff:203.0.113.7", ""},
		{"::cb00:7107", ""}, // 203.0.113.7, IPv4-compatible
	}
	for _, c := range cases {
		err := g.Check(netip.MustParseAddr(c.addr))
		if c.rng == "" {
			if err != nil {
				t.Errorf("Check(%s) = %v, want allowed", c.addr, err)
			}
			continue
		}
		var de *DeniedError
		if !errors.As(err, &de) || de.Range.String() != c.rng {
			t.Errorf("Check(%s) = %v, want denied by %s", c.addr, err, c.rng)
		}
	}
	// IPv4-compatible loopback is loopback, but :: and ::1 are not IPv4 addresses.
	for _, a := range []string{"::7f00:1", "::127.0.0.1", "::1", "::"} {
		if err := g.Check(netip.MustParseAddr(a)); err == nil || !strings.Contains(err.Error(), "loopback or unspecified") {
			t.Errorf("Check(%s) = %v, want refused as loopback or unspecified", a, err)
		}
	}
	// CheckURL sees the same, for literals in URLs.
	for _, u := range []string{"http://[::a9fe:a9fe]/latest/meta-data/", "http://100.100.100.200/latest/meta-data/", "http://168.63.129.16/machine", "http://[fe80::1%25eth0]:8080/"} {
		if err := g.CheckURL(context.Background(), u); err == nil || !strings.Contains(err.Error(), "denied range") {
			t.Errorf("CheckURL(%s) = %v, want refused", u, err)
		}
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"::a9fe:a9fe": "169.254.169.254", "::ffff:a9fe:a9fe": "169.254.169.254", "::1": "::1", "::": "::",
		"::ff": "::ff", "::1:0": "0.1.0.0", "2001:db8::1": "2001:db8::1", "10.0.0.1": "10.0.0.1", "fe80::1%eth0": "fe80::1%eth0",
	} {
		if got := Canonical(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Canonical(%s) = %s, want %s", in, got, want)
		}
	}
}
