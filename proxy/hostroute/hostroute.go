// Package hostroute decides whether a request is routed by its host name,
// "<slug>.<domain>" for one of the proxy's --host-domains, and to which slug.
// It is pure: no I/O, no allocation unless the host has upper-case letters.
//
// The rules (docs/proxy.md, "Routing by host"):
//
//   - A host under a configured domain is routed by host, whatever its path:
//     the host wins over the path. The path is forwarded unchanged either way.
//     Any other host (an IP address, another name, the bare domain itself, no
//     host at all) keeps path routing.
//   - The port is ignored ("a.d:8080" is "a.d"): behind Services and load
//     balancers the proxy cannot know which port the client dialled. A port that
//     is not digits makes the host not host-routed (path routing answers).
//   - Host names are case-insensitive (RFC 4343): "A.D" is "a.d", and the slug
//     is the lowercase label. One trailing dot (a fully qualified "a.d.") is
//     dropped; two are not a host name.
//   - The slug is exactly one label. A host that names a domain but not a valid
//     slug label ("x.y.d", "a_b.d") is [NoSlug]: 404, as an unknown slug.
//   - With several domains, the longest one the host ends with decides. A host
//     that equals a configured domain is that domain's bare name, not a slug
//     under a shorter one.
//   - On TLS, the server name (SNI) comes first and the request's host second:
//     if only one of them is host-routed, it decides; if both are and they name
//     different slugs, the request is [Misdirected] (421, RFC 9110 §15.5.20),
//     which a client that reused a connection for another name (HTTP/2
//     connection coalescing under a wildcard certificate) answers by opening a
//     new connection.
package hostroute

import (
	"fmt"
	"slices"
	"strings"
)

// Kind is what a host means for routing.
type Kind uint8

const (
	// Path: not host-routed; the path's first segment names the slug.
	Path Kind = iota
	// Slug: routed to the returned slug (which may be unknown to the route table: 404).
	Slug
	// NoSlug: the host names a configured domain but no valid slug label: 404.
	NoSlug
	// Misdirected: on TLS, the server name and the request's host name different slugs: 421.
	Misdirected
)

func (k Kind) String() string {
	return [...]string{"path", "slug", "no-slug", "misdirected"}[k]
}

// Domains are the proxy's --host-domains. The nil *Domains routes nothing by host.
type Domains struct {
	names []string // lowercase, no trailing dot, longest first
}

// New checks and normalizes domain names (case and one trailing dot are
// dropped; duplicates are merged). An empty list returns nil: no host routing.
func New(domains []string) (*Domains, error) {
	var names []string
	for _, d := range domains {
		n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if err := checkDomain(n); err != nil {
			return nil, fmt.Errorf("host domain %q: %w", d, err)
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.SortStableFunc(names, func(a, b string) int { return len(b) - len(a) })
	return &Domains{names: names}, nil
}

// Parse is New for a comma-separated list, as the --host-domains flag takes it.
func Parse(list string) (*Domains, error) {
	var ds []string
	for d := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(d) != "" {
			ds = append(ds, d)
		}
	}
	return New(ds)
}

// Names returns the domains, normalized, longest first.
func (d *Domains) Names() []string {
	if d == nil {
		return nil
	}
	return slices.Clone(d.names)
}

func checkDomain(n string) error {
	switch {
	case n == "":
		return fmt.Errorf("empty name")
	case strings.HasPrefix(n, "*.") || strings.HasPrefix(n, "."):
		return fmt.Errorf("give the domain itself (example.com routes <slug>.example.com), not a pattern")
	case strings.ContainsAny(n, ":/[]"):
		return fmt.Errorf("give a host name only, without scheme, port or path")
	case len(n) > 253-64: // room for a 63-byte slug label and its dot
		return fmt.Errorf("longer than %d bytes: no <slug>.<domain> would be a valid host name", 253-64)
	}
	labels := strings.Split(n, ".")
	for _, l := range labels {
		if !isLDHLabel(l) {
			return fmt.Errorf("label %q is not a DNS label (letters, digits and '-', 1 to 63 characters, no '-' at either end)", l)
		}
	}
	if allDigits(labels[len(labels)-1]) {
		return fmt.Errorf("the last label is all digits: IP addresses cannot be host domains")
	}
	return nil
}

func isLDHLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Host is the routing of a request by its host: HTTP/1.1's Host header, or
// HTTP/2's :authority. slug is set only for [Slug].
func (d *Domains) Host(host string) (slug string, k Kind) {
	if d == nil || host == "" {
		return "", Path
	}
	name, ok := hostName(host)
	if !ok {
		return "", Path
	}
	for _, dom := range d.names {
		if len(name) == len(dom) && equalFold(name, dom) {
			return "", Path // the bare domain
		}
		cut := len(name) - len(dom) - 1
		if cut > 0 && name[cut] == '.' && equalFold(name[cut+1:], dom) {
			return label(name[:cut])
		}
	}
	return "", Path
}

// TLS is the routing of a request on the TLS listener: sni is the server name
// the client sent in its handshake ("" if none), host the request's Host or :authority.
func (d *Domains) TLS(sni, host string) (slug string, k Kind) {
	s, ks := d.Host(sni)
	h, kh := d.Host(host)
	switch {
	case ks == Path:
		return h, kh
	case kh == Path || (kh == ks && h == s):
		return s, ks
	}
	return "", Misdirected
}

// hostName drops the port and one trailing dot. ok is false for what cannot be
// a host name under a domain: an IP-literal ("[::1]"), a non-numeric port, or
// a name ending in two dots.
func hostName(host string) (name string, ok bool) {
	if host[0] == '[' {
		return "", false
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if !allDigits(host[i+1:]) && i+1 != len(host) {
			return "", false
		}
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || host[len(host)-1] == '.' {
		return "", false
	}
	return host, true
}

// equalFold compares a host name with a lowercase domain, folding ASCII only:
// strings.EqualFold would also take "ſ" (U+017F) for "s" and "K" (U+212A) for "k".
func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// label is the slug a host's first label names: a lowercase DNS label of at
// most 63 bytes, like every slug.
func label(l string) (string, Kind) {
	if !isLDHLabel(l) {
		return "", NoSlug // dots, underscores, an empty or over-long label...
	}
	for i := 0; i < len(l); i++ {
		if 'A' <= l[i] && l[i] <= 'Z' {
			return strings.ToLower(l), Slug
		}
	}
	return l, Slug
}
