package proxy

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/go-logr/logr"

	"github.com/slugway/slugway/proxy/routes"
	"github.com/slugway/slugway/tracing"
)

// Options configure the proxy. The zero value of each field means its documented default.
type Options struct {
	// Listen is the plain HTTP address (HTTP/1.1 and h2c). Default ":8080".
	Listen string
	// TLSListen serves HTTPS (HTTP/1.1 and HTTP/2 by ALPN) when TLSCertFile and
	// TLSKeyFile are set. Default ":8443".
	TLSListen, TLSCertFile, TLSKeyFile string
	// AdminListen serves /healthz, /readyz and /metrics. Default ":9080".
	AdminListen string
	// Listener, TLSListener and AdminListener, when set, are used instead of
	// binding the addresses above (tests bind port 0 themselves).
	Listener, TLSListener, AdminListener net.Listener

	// HostDomains route requests whose host is <slug>.<domain>, for one of
	// these domains, to that slug, paths unchanged (package hostroute; checked
	// by New). Other hosts keep path routing. Empty: path routing only.
	HostDomains []string

	// TrustedProxies are the peers whose X-Forwarded-For/-Proto/-Host are kept and extended.
	TrustedProxies []netip.Prefix
	// LBPolicy is PolicyP2C (default: power of two choices on requests in flight) or PolicyRoundRobin.
	LBPolicy string

	// DialTimeout bounds connecting to an instance. Default 2s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an instance's response headers (then 504). Default 30s.
	ResponseHeaderTimeout time.Duration
	// RequestTimeout bounds a whole request, body included (then 504, or a cut
	// stream). 0, the default, means none: streams may last. Not applied to upgrades.
	RequestTimeout time.Duration
	// IdleTimeout closes idle client keep-alive connections. Default 120s.
	IdleTimeout time.Duration
	// UpstreamIdleTimeout closes idle connections to instances. Default 90s.
	UpstreamIdleTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (slowloris). Default 10s.
	ReadHeaderTimeout time.Duration
	// MaxHeaderBytes bounds the request headers (then 431). Default 64 KiB.
	MaxHeaderBytes int
	// MaxResponseHeaderBytes bounds an instance's response head, on every path
	// (the upstream client and the Transports; then 502). Default 64 KiB.
	MaxResponseHeaderBytes int
	// MaxRequestBodyBytes bounds request bodies (then 413). 0, the default, means no limit.
	MaxRequestBodyBytes int64
	// MaxIdleConnsPerHost is the keep-alive pool per instance. Default 512.
	MaxIdleConnsPerHost int

	// MaxRetries bounds the further instances a request is sent to. Default 2; negative disables retries.
	MaxRetries int
	// RetryBudgetRatio is the retries earned per request for failures that may
	// have reached an instance (dial failures are always retried). Default 0.2.
	RetryBudgetRatio float64
	// RetryBudgetBurst is how many such retries may be saved up. Default 100.
	RetryBudgetBurst int
	// EjectBase and EjectMax: a connection failure takes an instance out of
	// rotation for EjectBase, doubling per consecutive failure up to EjectMax. Defaults 1s and 30s.
	EjectBase, EjectMax time.Duration

	// Coalesce is how long the watcher waits after an event for more before
	// rebuilding the route table. Default 10ms.
	Coalesce time.Duration
	// DrainTimeout bounds the graceful shutdown's wait for requests in flight. Default 30s.
	DrainTimeout time.Duration
	// ShutdownDelay keeps serving (while /readyz fails) before draining, so that
	// load balancers stop sending new connections first. Default 0.
	ShutdownDelay time.Duration

	// Dial connects to instances; nil means a plain net.Dialer. The SSRF guard plugs in here.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// OnTableSwap, when set, is called after each new route table starts serving (tests, benchmarks).
	OnTableSwap func(*routes.Table)

	// AllowedUpgrades are the protocols an HTTP/1.1 Upgrade may switch to,
	// case-insensitively. Default ["websocket"]; h2c is never forwarded. An
	// upgrade to anything else is forwarded without its Upgrade field, as a
	// plain request (RFC 9110 7.8 lets a server ignore Upgrade).
	AllowedUpgrades []string
	// MaxConnsPerInstance caps the connections (requests in flight) the proxy
	// opens to one instance; over it a request gets 503 with Retry-After if no
	// other instance has room. 0, the default, means no cap.
	MaxConnsPerInstance int
	// MaxClientConns caps the client connections served at once, per
	// listener; further ones wait in the listen backlog. 0 (default): no cap.
	MaxClientConns int
	// BodyIdleTimeout bounds the time between two reads of a streamed request
	// body (one larger than the 64 KiB the front end reads first), so a slow
	// or stalled body cannot hold an instance's connection. Default 30s.
	BodyIdleTimeout time.Duration
	// MaxHeaderCount bounds the number of request header fields (then 431),
	// besides their size. Default 100.
	MaxHeaderCount int

	// NetHTTPOnly serves every plain connection with net/http's server, turning
	// off the fast HTTP/1.1 front end (which otherwise serves plain HTTP/1.1
	// requests to http:// instances and hands net/http everything else).
	NetHTTPOnly bool

	// AccessLog logs one line per request.
	AccessLog bool
	// Tracing, when set, records a span per request and sends the instance its
	// traceparent (tracing.go); nil, the default, is tracing off.
	Tracing *tracing.Tracing
	// Dashboard serves the live dashboard at /dashboard/ on the admin port (package dashboard).
	Dashboard bool
	// Pprof serves /debug/pprof/ on the admin port.
	Pprof  bool
	Logger logr.Logger
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.Listen == "" {
		o.Listen = ":8080"
	}
	if o.TLSListen == "" {
		o.TLSListen = ":8443"
	}
	if o.AdminListen == "" {
		o.AdminListen = ":9080"
	}
	if o.LBPolicy == "" {
		o.LBPolicy = PolicyP2C
	}
	set(&o.DialTimeout, 2*time.Second)
	set(&o.ResponseHeaderTimeout, 30*time.Second)
	set(&o.IdleTimeout, 120*time.Second)
	set(&o.UpstreamIdleTimeout, 90*time.Second)
	set(&o.ReadHeaderTimeout, 10*time.Second)
	set(&o.EjectBase, time.Second)
	set(&o.EjectMax, 30*time.Second)
	set(&o.Coalesce, 10*time.Millisecond)
	set(&o.DrainTimeout, 30*time.Second)
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.AllowedUpgrades == nil {
		o.AllowedUpgrades = []string{"websocket"}
	}
	set(&o.BodyIdleTimeout, 30*time.Second)
	if o.MaxHeaderCount <= 0 {
		o.MaxHeaderCount = 100
	}
	if o.MaxResponseHeaderBytes <= 0 {
		o.MaxResponseHeaderBytes = 64 << 10
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 512
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 2
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	o.MaxRetries = min(o.MaxRetries, 7)
	if o.RetryBudgetRatio == 0 {
		o.RetryBudgetRatio = 0.2
	}
	if o.RetryBudgetBurst == 0 {
		o.RetryBudgetBurst = 100
	}
	if o.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
}
