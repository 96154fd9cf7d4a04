package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy"
)

// rawExchange sends one HTTP/1.1 request as bytes on a fresh connection and
// returns the response and its body.
func rawExchange(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestHostRouting: <slug>.<domain> routes by host on HTTP/1.1 (behind the
// front end and behind net/http alone), h2c and TLS, with the path unchanged;
// everything else keeps path routing.
func TestHostRouting(t *testing.T) {
	be := echoServer(t)
	createSlug(t, "host-a")
	createInstance(t, "host-a", "host-a-1", be.URL, slugwayv1.HealthHealthy, "")
	createSlug(t, "host-b")
	createInstance(t, "host-b", "host-b-1", be.URL+"/api/", slugwayv1.HealthHealthy, "")
	createSlug(t, "host-empty")
	pool, cert, key := wildcardCert(t, "host.test")

	for _, mode := range []string{"front", "net-http"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, proxy.Options{
				HostDomains: []string{"host.test", "Other.Test."}, NetHTTPOnly: mode == "net-http",
				TLSCertFile: cert, TLSKeyFile: key, TLSListener: listen(t),
			})
			waitRoute(t, p, "host-a", 1)
			waitRoute(t, p, "host-b", 1)
			waitRoute(t, p, "host-empty", 0)

			for _, tc := range []struct {
				host, target string
				code         int
				want         string // the target the instance got, or the error body's slug
				err          string // the error body's message
			}{
				{"host-a.host.test", "/hello?a=1&a=2", 200, "/hello?a=1&a=2", ""},
				{"host-a.host.test", "/grpc.health.v1.Health/Check", 200, "/grpc.health.v1.Health/Check", ""},
				{"host-a.host.test", "/", 200, "/", ""},
				{"host-a.host.test:8080", "/x", 200, "/x", ""},                  // the port is ignored
				{"HOST-A.Host.TEST.", "/x", 200, "/x", ""},                      // case and one trailing dot too
				{"host-a.other.test", "/x", 200, "/x", ""},                      // the second domain, normalized
				{"host-b.host.test", "/v1/x", 200, "/api/v1/x", ""},             // the instance's own path prefix
				{"host-a.host.test", "/host-b/x", 200, "/host-b/x", ""},         // the host wins over the path
				{"host-a.host.test", "/host-a/hello", 200, "/host-a/hello", ""}, // and the path stays as sent
				{"nope.host.test", "/host-a/x", 404, "nope", "unknown slug"},    // a domain, no such slug: not path routing
				{"x.y.host.test", "/host-a/x", 404, "", "unknown slug"},         // not one label
				{"host-empty.host.test", "/x", 503, "host-empty", "no healthy instance"},
				{"host-a.host.test", "/../x", 400, "", "'..'"}, // path routing's checks still apply
				{"host-a.host.test", "/a/%2e%2e/x", 400, "", "'..'"},
				{"host.test", "/host-a/x", 200, "/host-a/x", ""},             // the bare domain: path routing
				{"127.0.0.1", "/host-a/x", 200, "/host-a/x", ""},             // an IP: path routing
				{"proxy.example.org", "/host-b/x", 200, "/api/host-b/x", ""}, // another name: path routing
				{"proxy.example.org", "/grpc.health.v1.Health/Check", 400, "", "malformed slug"},
			} {
				resp, body := rawExchange(t, p.Addr(), "GET "+tc.target+" HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
				checkHostAnswer(t, "HTTP/1.1 "+tc.host+tc.target, resp, body, tc.code, tc.want, tc.err)
			}

			// h2c (:authority) and TLS (server name, then :authority).
			var h2c http.Protocols
			h2c.SetUnencryptedHTTP2(true)
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &h2c, DialContext: dialTo(p.Addr())}}
			tc := func(sni string) *http.Client {
				return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
					ForceAttemptHTTP2: true, DialContext: dialTo(p.TLSAddr()),
					TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: sni, InsecureSkipVerify: sni == ""},
				}}
			}
			for _, x := range []struct {
				name   string
				c      *http.Client
				url    string
				host   string
				code   int
				want   string
				errMsg string
			}{
				{"h2c", c, "http://host-a.host.test/x", "", 200, "/x", ""},
				{"h2c unknown", c, "http://nope.host.test/x", "", 404, "nope", "unknown slug"},
				{"h2c path routing", c, "http://127.0.0.1/host-b/x", "", 200, "/api/host-b/x", ""},
				{"tls", tc("host-a.host.test"), "https://host-a.host.test/x", "", 200, "/x", ""},
				{"tls unknown", tc("nope.host.test"), "https://nope.host.test/x", "", 404, "nope", "unknown slug"},
				// A connection made for host-a, reused for host-b (HTTP/2 coalescing under *.host.test): 421.
				{"tls coalesced", tc("host-a.host.test"), "https://host-b.host.test/x", "", 421, "", "misdirected"},
				// The server name decides when the host is not host-routed...
				{"tls sni only", tc("host-a.host.test"), "https://127.0.0.1/host-b/x", "", 200, "/host-b/x", ""},
				// ...and the host when there is no server name (a client dialling an IP address).
				{"tls no sni", tc(""), "https://127.0.0.1/x", "host-a.host.test", 200, "/x", ""},
				{"tls neither", tc(""), "https://127.0.0.1/host-b/x", "", 200, "/api/host-b/x", ""},
			} {
				req, _ := http.NewRequest(http.MethodGet, x.url, nil)
				if x.host != "" {
					req.Host = x.host // the URL's host is the server name, unless ServerName says otherwise
				}
				resp, err := x.c.Do(req)
				if err != nil {
					t.Errorf("%s: %v", x.name, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 {
					t.Errorf("%s: %s, want HTTP/2", x.name, resp.Proto)
				}
				checkHostAnswer(t, x.name, resp, body, x.code, x.want, x.errMsg)
			}

			m := metricsText(t, p)
			for _, want := range []string{
				`slugway_proxy_requests_total{code="200",slug="host-a"}`,
				`slugway_proxy_requests_total{code="503",slug="host-empty"}`,
				`slugway_proxy_requests_total{code="404",slug="(unknown)"}`,
				`slugway_proxy_requests_total{code="421",slug="(unknown)"}`,
			} {
				if !strings.Contains(m, want) {
					t.Errorf("metrics lack %q:\n%s", want, grep(m, "slugway_proxy_requests_total"))
				}
			}
			if strings.Contains(m, `slug="nope"`) || strings.Contains(m, `slug="x.y"`) {
				t.Errorf("a host naming no slug made a series of its own:\n%s", grep(m, "slugway_proxy_requests_total"))
			}
		})
	}
}

func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

// checkHostAnswer checks a 200 from the echo instance (want: the target it got)
// or the proxy's JSON error (want: its slug; errMsg: in its message).
func checkHostAnswer(t *testing.T, what string, resp *http.Response, body []byte, code int, want, errMsg string) {
	t.Helper()
	if resp.StatusCode != code {
		t.Errorf("%s: status %d, want %d: %s", what, resp.StatusCode, code, body)
		return
	}
	if code == 200 {
		var e echoed
		if err := json.Unmarshal(body, &e); err != nil || e.Target != want {
			t.Errorf("%s: the instance got %q (%v), want %q", what, e.Target, err, want)
		}
		return
	}
	var e errBody
	if err := json.Unmarshal(body, &e); err != nil || e.Slug != want || !strings.Contains(e.Error, errMsg) {
		t.Errorf("%s: body %s (%v), want slug %q and an error containing %q", what, body, err, want, errMsg)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s: content type %q", what, resp.Header.Get("Content-Type"))
	}
}
