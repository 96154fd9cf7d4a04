package proxy

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/slugway/slugway/proxy/wire"
)

// FuzzHeaders feeds arbitrary request headers (as a server that accepted them would
// hand them over) to both header paths and checks what goes upstream: no hop-by-hop
// field, nothing the client's Connection header named, X-Forwarded-For ending in the
// real peer (and only that peer from an untrusted one), and the fast path's written
// block parsing back to exactly the Transport path's header (so no value can smuggle
// in a field of its own).
func FuzzHeaders(f *testing.F) {
	f.Add("Connection: keep-alive, X-Drop\nX-Drop: 1\nTe: trailers, deflate\nCookie: a=1\nCookie: b=2", byte(0))
	f.Add("X-Forwarded-For: 1.1.1.1\nX-Forwarded-Host: evil\nForwarded: for=x\nUser-Agent: ua", byte(1))
	f.Add("Upgrade: websocket\nConnection: Upgrade\nSec-Websocket-Key: x", byte(2))
	f.Add("Proxy-Authorization: Basic x\nKeep-Alive: timeout=5\nTransfer-Encoding: chunked\nTrailer: X", byte(3))
	f.Add("Connection: X-Forwarded-For, Te\nX-Forwarded-For: 9.9.9.9\nX-Forwarded-Proto: https", byte(0))
	h := NewHandler(Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	peers := []string{"10.1.2.3:5", "192.0.2.1:5", "[2001:db8::1]:5", "10.0.0.1:1"}
	hop := []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Trailer", "Transfer-Encoding", "Upgrade"}

	f.Fuzz(func(t *testing.T, block string, peer byte) {
		hdr := http.Header{}
		for _, line := range strings.Split(block, "\n") {
			k, v, ok := strings.Cut(line, ":")
			v = strings.TrimSpace(v)
			if !ok || !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
				continue // a server refuses such a field before the proxy sees it
			}
			k = textproto.CanonicalMIMEHeaderKey(k)
			if k == "Host" {
				continue // net/http moves it to r.Host
			}
			hdr[k] = append(hdr[k], v)
		}
		r := httptest.NewRequest("GET", "/s/x", nil)
		r.Header, r.RemoteAddr, r.Host = hdr, peers[int(peer)%len(peers)], "front.example"
		ip := remoteIP(r.RemoteAddr)

		out := h.testOutHeader(r)
		for _, k := range hop {
			if _, ok := out[k]; ok {
				t.Fatalf("hop-by-hop %s forwarded: %v", k, out)
			}
		}
		if te := out["Te"]; len(te) > 1 || (len(te) == 1 && te[0] != "trailers") {
			t.Fatalf("Te %q forwarded; only trailers may pass", te)
		}
		for _, named := range hdr["Connection"] {
			for _, tok := range strings.Split(named, ",") {
				k := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(tok))
				if strings.HasPrefix(k, "X-Forwarded-") {
					continue // set by the proxy itself
				}
				if _, ok := out[k]; ok && k != "" {
					t.Fatalf("%s was named in Connection but forwarded", k)
				}
			}
		}
		xff := out["X-Forwarded-For"]
		if len(xff) != 1 || !strings.HasSuffix(xff[0], ip) {
			t.Fatalf("X-Forwarded-For %q does not end in the peer %s", xff, ip)
		}
		if !h.trusted(ip) && xff[0] != ip {
			t.Fatalf("untrusted peer %s: X-Forwarded-For %q kept a client-supplied value", ip, xff)
		}

		want := out
		if ua := want["User-Agent"]; len(ua) == 1 && ua[0] == "" {
			delete(want, "User-Agent")
		}
		delete(want, "Content-Length")
		var sb strings.Builder
		bw := bufio.NewWriter(&sb)
		if err := h.testWriteOutHeader(bw, r); err != nil {
			t.Fatal(err)
		}
		bw.WriteString("\r\n")
		_ = bw.Flush()
		got, err := textproto.NewReader(bufio.NewReader(strings.NewReader(sb.String()))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("fast path wrote an unparsable block %q: %v", sb.String(), err)
		}
		if !reflect.DeepEqual(http.Header(got), want) {
			t.Fatalf("fast path and Transport path disagree:\n fast      %v\n transport %v", got, want)
		}

		// The fast front end writes the same fields from the raw head, with the
		// names in the client's case.
		raw := "GET /s/x HTTP/1.1\r\nHost: front.example\r\n"
		for _, line := range strings.Split(block, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && httpguts.ValidHeaderFieldName(k) &&
				httpguts.ValidHeaderFieldValue(strings.TrimSpace(v)) && !strings.EqualFold(k, "host") {
				raw += k + ": " + strings.TrimSpace(v) + "\r\n"
			}
		}
		var wr wire.Request
		if _, err := wire.ParseRequest([]byte(raw+"\r\n"), 1<<20, &wr); err != nil || wr.Unusual != "" {
			return // such a request goes to net/http, checked above
		}
		pr := request{method: wr.Method, host: wr.Host, fields: wr.Fields, remoteIP: ip}
		pr.scan()
		sb.Reset()
		bw.Reset(&sb)
		if err := h.rewriteRequestHeader(&pr, (*wireHeader)(bw)); err != nil {
			t.Fatal(err)
		}
		bw.WriteString("\r\n")
		_ = bw.Flush()
		got, err = textproto.NewReader(bufio.NewReader(strings.NewReader(sb.String()))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("front end wrote an unparsable block %q: %v", sb.String(), err)
		}
		if !reflect.DeepEqual(http.Header(got), want) {
			t.Fatalf("front end and Transport path disagree:\n front     %v\n transport %v", got, want)
		}
	})
}
