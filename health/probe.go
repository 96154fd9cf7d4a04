// Package health probes instances and turns probe results into OpenOrch's
// health words (Healthy, Degraded, Unreachable) using thresholds.
//
// It knows nothing about Kubernetes objects: the controller feeds it Specs
// and reads back States. A Monitor schedules probes per instance, each on its
// own jittered interval, with bounded concurrency.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// Kind is how an instance is probed.
type Kind string

const (
	KindHTTP Kind = "http"
	KindTCP  Kind = "tcp"
)

// Result is the outcome of one probe.
type Result struct {
	OK      bool
	Latency time.Duration
	// Message is a short human-readable account: "HTTP 200", "dial tcp ...: connection refused".
	// It carries no timings, so that repeating the same outcome repeats the same message
	// and the controller has nothing new to write.
	Message string
}

// Target is what one probe checks.
type Target struct {
	Kind Kind
	// URL is the full URL requested by HTTP probes.
	URL string
	// Address is host:port, dialled by TCP probes.
	Address string
	Timeout time.Duration
}

// ProbeURL joins an instance URL with a health-check path, keeping the URL's own path as a prefix,
// the same way the proxy joins request paths.
func ProbeURL(instanceURL, path string) (string, error) {
	u, err := url.Parse(instanceURL)
	if err != nil {
		return "", err
	}
	p, err := url.Parse(path)
	if err != nil {
		return "", fmt.Errorf("health-check path %q: %w", path, err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(p.Path, "/")
	u.RawPath = ""
	u.RawQuery = p.RawQuery
	return u.String(), nil
}

// HostPort returns the host:port of an http or https URL, with the scheme's default port filled in.
func HostPort(instanceURL string) (string, error) {
	u, err := url.Parse(instanceURL)
	if err != nil {
		return "", err
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if u.Hostname() == "" {
		return "", errors.New("URL has no host")
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// MaxResponseHeaderBytes bounds an instance's response head to a probe, as the
// proxy's --max-response-header-bytes (default 64 KiB) bounds it to a request:
// an instance that only answers with a larger head is not healthy, since the
// proxy would answer 502 for every request to it.
const MaxResponseHeaderBytes = 64 << 10

// Prober runs probes. The zero value is not usable: use NewProber.
type Prober struct {
	client *http.Client
	// dial opens TCP probes' connections, through the same dial-time policy as HTTP probes.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewProber returns a Prober whose HTTP probes reuse connections and never follow redirects.
// dial may be nil; it is where a dial-time policy (such as an SSRF guard) plugs in.
func NewProber(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Prober {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	if dial == nil {
		dial = d.DialContext
	}
	tr := &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		// The same limit as the proxy's; over it the probe fails.
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
	}
	return &Prober{
		dial: dial,
		client: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// probe runs one probe (Probe, in probe_trace.go, wraps it in a span).
func (p *Prober) probe(ctx context.Context, t Target) Result {
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	start := time.Now()
	switch t.Kind {
	case KindTCP:
		conn, err := p.dial(ctx, "tcp", t.Address)
		lat := time.Since(start)
		if err != nil {
			return Result{Latency: lat, Message: describe(err, t.Timeout)}
		}
		_ = conn.Close()
		return Result{OK: true, Latency: lat, Message: "TCP connect succeeded"}
	default:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
		if err != nil {
			return Result{Message: err.Error()}
		}
		req.Header.Set("User-Agent", "slugway-health/1")
		otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
		resp, err := p.client.Do(req)
		if err != nil {
			return Result{Latency: time.Since(start), Message: describe(err, t.Timeout)}
		}
		// Drain a little so the connection can be reused, then close.
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		_ = resp.Body.Close()
		lat := time.Since(start)
		ok := resp.StatusCode >= 200 && resp.StatusCode < 400
		return Result{OK: ok, Latency: lat, Message: fmt.Sprintf("HTTP %d", resp.StatusCode)}
	}
}

func describe(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fmt.Sprintf("no answer within %s", timeout)
	}
	// Strip the method and URL that net/http prefixes; the instance already shows its URL.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
