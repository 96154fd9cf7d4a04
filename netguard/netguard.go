// Package netguard is slugway's SSRF guard. Anyone who owns a slug can point an
// Instance's URL anywhere, and the controller (health probes) and the proxy (traffic)
// will then connect there from inside the cluster. The Guard refuses addresses an
// instance must never name: link-local and cloud metadata endpoints by default, any
// CIDR the operator adds, and loopback unless explicitly allowed.
//
// It checks twice. CheckURL runs at admission, so a bad URL is refused with a clear
// message when it is applied. DialContext runs at every connection, after DNS
// resolution, and dials the checked IP address itself, so a hostname that resolves
// (or later re-resolves, "DNS rebinding") to a denied address is refused too.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultDeny is the deny-list used when none is configured: the link-local ranges
// (IPv4 169.254.0.0/16 holds the metadata address 169.254.169.254 of AWS, GCP, Azure,
// OpenStack and others; IPv6 fe80::/10) and the metadata endpoints outside them:
// AWS's IPv6 one, Alibaba Cloud's 100.100.100.200 and Azure's wire server 168.63.129.16.
var DefaultDeny = []string{"169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "168.63.129.16/32"}

// Resolver turns a host name into IP addresses. *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Guard decides which addresses instance URLs may reach. It is safe for concurrent use.
// A nil *Guard allows everything.
type Guard struct {
	deny          []netip.Prefix
	allowLoopback bool

	// Resolver resolves host names; nil means net.DefaultResolver. Tests plug in a fake.
	Resolver Resolver
	// Dialer dials the checked addresses; nil means a net.Dialer with a 30s keep-alive.
	Dialer *net.Dialer
}

// New returns a Guard that refuses addresses in denyCIDRs (e.g. "169.254.0.0/16";
// a bare address such as "fd00:ec2::254" counts as a single-address range), and
// loopback and unspecified addresses (127.0.0.0/8, ::1, 0.0.0.0, ::) unless allowLoopback.
func New(denyCIDRs []string, allowLoopback bool) (*Guard, error) {
	g := &Guard{allowLoopback: allowLoopback}
	for _, s := range denyCIDRs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("deny CIDR %q is neither a CIDR (like 169.254.0.0/16) nor an IP address: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		g.deny = append(g.deny, unmapPrefix(p.Masked()))
	}
	return g, nil
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/120) into the IPv4 one,
// since addresses are unmapped before they are checked.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// Canonical maps IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d, the
// deprecated ::/96 form, but not :: or ::1) IPv6 addresses to the IPv4 address they
// carry, so that ::a9fe:a9fe is checked as 169.254.169.254. Other addresses are unchanged.
func Canonical(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if !a.Is6() || a.Zone() != "" {
		return a
	}
	b := a.As16()
	for _, x := range b[:12] {
		if x != 0 {
			return a
		}
	}
	if b[12]|b[13]|b[14] == 0 {
		return a // ::, ::1 and the rest of ::/120 are not IPv4 addresses
	}
	return netip.AddrFrom4([4]byte(b[12:]))
}

// DenyCIDRs returns the configured deny-list, for logs.
func (g *Guard) DenyCIDRs() []string {
	if g == nil {
		return nil
	}
	out := make([]string, len(g.deny))
	for i, p := range g.deny {
		out[i] = p.String()
	}
	return out
}

// DeniedError says which address was refused and why. Callers can match it with errors.As.
type DeniedError struct {
	// Host is the host name as written in the URL or dial address ("" for an IP literal).
	Host string
	// Addr is the refused address.
	Addr netip.Addr
	// Range is the deny-list entry that matched; invalid for loopback/unspecified refusals.
	Range netip.Prefix
}

func (e *DeniedError) Error() string {
	what := "address " + e.Addr.String()
	if e.Host != "" && e.Host != e.Addr.String() {
		what = fmt.Sprintf("host %q resolves to %s, which", e.Host, e.Addr)
	}
	if e.Range.IsValid() {
		return fmt.Sprintf("%s is in the denied range %s (link-local and cloud metadata addresses are refused to prevent SSRF; change the controller's and proxy's --deny-cidrs to allow it)", what, e.Range)
	}
	return fmt.Sprintf("%s is a loopback or unspecified address, which instances may not use unless the controller and proxy run with --allow-loopback", what)
}

// Check reports whether a single IP address may be reached.
func (g *Guard) Check(a netip.Addr) error {
	return g.check("", a)
}

func (g *Guard) check(host string, a netip.Addr) error {
	if g == nil {
		return nil
	}
	// A zoned address never matches a prefix, and a mapped or compatible one never
	// matches an IPv4 prefix: normalize all three.
	a = Canonical(a.WithZone(""))
	if !g.allowLoopback && (a.IsLoopback() || a.IsUnspecified()) {
		return &DeniedError{Host: host, Addr: a}
	}
	for _, p := range g.deny {
		if p.Contains(a) {
			return &DeniedError{Host: host, Addr: a, Range: p}
		}
	}
	return nil
}

// CheckURL vets an instance URL: it must be an absolute http or https URL with a host,
// without userinfo or fragment, and its host must not be, or resolve to, a denied
// address (any of its addresses). A host name that does not resolve yet is allowed
// here (its Service may not exist yet); DialContext checks it again on every connection.
func (g *Guard) CheckURL(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("not a valid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q is not allowed: use an absolute http:// or https:// URL", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return errors.New("the URL has no host: write it as http://host[:port][/path]")
	}
	if u.User != nil {
		return errors.New("the URL must not contain userinfo (user:password@)")
	}
	if u.Fragment != "" || strings.Contains(rawURL, "#") {
		return errors.New("the URL must not contain a fragment (#...)")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number between 1 and 65535", p)
		}
	}
	if g == nil {
		return nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return g.check("", a)
	}
	addrs, err := g.lookup(ctx, host)
	if err != nil {
		return nil // not resolvable now; refused at dial time if it ever resolves to a denied address
	}
	for _, a := range addrs {
		if err := g.check(host, a); err != nil {
			return err
		}
	}
	return nil
}

func (g *Guard) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	r := g.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	return r.LookupNetIP(ctx, "ip", host)
}

// DialContext resolves addr's host, refuses the connection if any of its addresses
// is denied, and otherwise dials the checked addresses themselves, one after another
// until one answers. Because it dials the IP it checked, a resolver cannot hand the
// check one address and the connection another. Use it as http.Transport.DialContext.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := g.dialer()
	if g == nil {
		return d.DialContext(ctx, network, addr)
	}
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("netguard: network %q is not supported (use tcp or udp)", network)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("netguard: dial address %q: %w", addr, err)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = g.lookup(ctx, host); err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("netguard: host %q has no addresses", host)
	}
	for _, a := range addrs {
		if err := g.check(host, a); err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
	}
	var firstErr error
	tried := 0
	for _, a := range addrs {
		a = Canonical(a)
		if (strings.HasSuffix(network, "4") && !a.Is4()) || (strings.HasSuffix(network, "6") && !a.Is6()) {
			continue
		}
		tried++
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if tried == 0 {
		return nil, fmt.Errorf("netguard: host %q has no %s address", host, network)
	}
	return nil, firstErr
}

var defaultDialer = &net.Dialer{KeepAlive: 30 * time.Second}

func (g *Guard) dialer() *net.Dialer {
	if g == nil || g.Dialer == nil {
		return defaultDialer
	}
	return g.Dialer
}
