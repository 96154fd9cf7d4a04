package registry

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// URLKey returns the canonical key of an instance URL: two URLs with the same key
// reach the same endpoint, so they belong to the same slug. The webhook refuses a
// URL whose key another slug holds, and the controller's URL index is built on it.
//
// The key is scheme://host[:port]/path with
//   - the scheme and host lower-cased, a host name's trailing dot dropped, and a
//     Unicode host name written as its ASCII (punycode) form;
//   - IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) IPv6 addresses
//     written as the IPv4 address, other IPv6 addresses in their RFC 5952 form, and
//     IPv4 addresses in the shorthand notations a resolver accepts (127.1,
//     0x7f.0.0.1, 2130706433, 0177.0.0.1) in dotted decimal;
//   - the scheme's default port (80, 443) elided, and leading zeros of the port dropped;
//   - in the path, percent-encodings upper-cased and decoded where they stand for an
//     unreserved character, empty segments ("//") collapsed, "." segments removed,
//     and the trailing slash dropped; the query is not part of the key (the proxy
//     never sends it).
//
// A ".." segment is an error (see ErrDotDot): it names another path on the same
// host, and whether it does depends on the backend.
func URLKey(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Opaque != "" || u.Host == "" {
		return "", errors.New("the URL has no host: write it as http://host[:port][/path]")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	host, err := canonicalHost(u.Hostname())
	if err != nil {
		return "", err
	}
	port, err := canonicalPort(u.Port())
	if err != nil {
		return "", err
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path, err := canonicalPath(u.EscapedPath())
	if err != nil {
		return "", err
	}
	return scheme + "://" + host + path, nil
}

// ErrDotDot is returned for a URL whose path has a ".." segment.
var ErrDotDot = errors.New(`the path has a ".." segment: write the path it stands for instead`)

// NormalizeURL returns URLKey(raw), or raw itself when it has no key (it does not
// parse, or its path has a ".." segment), so that such a URL still equals only itself.
func NormalizeURL(raw string) string {
	k, err := URLKey(raw)
	if err != nil {
		return raw
	}
	return k
}

func canonicalHost(h string) (string, error) {
	h = strings.TrimRight(strings.ToLower(h), ".")
	if h == "" {
		return "", errors.New("the URL has no host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return canonicalAddr(a).String(), nil
	}
	if a, ok := parseIPv4Shorthand(h); ok {
		return a.String(), nil
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			a, err := idna.Lookup.ToASCII(h)
			if err != nil {
				return "", fmt.Errorf("host %q is not a valid internationalized domain name: %w", h, err)
			}
			return a, nil
		}
	}
	return h, nil
}

// canonicalAddr unmaps IPv4-mapped and IPv4-compatible IPv6 addresses. ::/96 holds
// the deprecated IPv4-compatible form; :: and ::1 are the unspecified and loopback
// addresses, not IPv4 ones, and stay as they are.
func canonicalAddr(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() && a.Zone() == "" {
		b := a.As16()
		zero := true
		for _, x := range b[:12] {
			if x != 0 {
				zero = false
				break
			}
		}
		if zero && (b[12]|b[13]|b[14]) != 0 {
			return netip.AddrFrom4([4]byte(b[12:]))
		}
	}
	return a
}

// parseIPv4Shorthand parses what inet_aton accepts and netip does not: one to four
// parts, each decimal, octal (leading 0) or hex (0x), the last filling the bytes left.
func parseIPv4Shorthand(h string) (netip.Addr, bool) {
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x"):
			p, base = p[2:], 16
		case len(p) > 1 && p[0] == '0':
			p, base = p[1:], 8
		}
		if p == "" {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (8 * (3 - i))
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(4-(len(vals)-1))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// canonicalPort drops leading zeros: Go's dialer and most others read 019601 as 19601.
func canonicalPort(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	n, err := strconv.ParseUint(p, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number between 1 and 65535", p)
	}
	return strconv.FormatUint(n, 10), nil
}

// canonicalPath normalizes an escaped path (RFC 3986 §6.2.2 and "//" collapsed).
func canonicalPath(p string) (string, error) {
	var b strings.Builder
	for _, seg := range strings.Split(p, "/") {
		seg = normalizeEscapes(seg)
		switch seg {
		case "", ".":
			continue
		case "..":
			return "", ErrDotDot
		}
		b.WriteByte('/')
		b.WriteString(seg)
	}
	return b.String(), nil
}

// normalizeEscapes upper-cases percent-encodings and decodes those of unreserved characters.
func normalizeEscapes(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			c := unhex(s[i+1])<<4 | unhex(s[i+2])
			if isUnreserved(c) {
				b.WriteByte(c)
			} else {
				b.WriteByte('%')
				b.WriteString(strings.ToUpper(s[i+1 : i+3]))
			}
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
