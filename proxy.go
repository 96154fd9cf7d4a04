package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/slugway/slugway/proxy"
	"github.com/slugway/slugway/tracing"
)

// runProxy is "slugway proxy": flags in, proxy.Run, until signalled; see the proxy package.
func runProxy(args []string) error {
	fs := flag.NewFlagSet("slugway proxy", flag.ContinueOnError)
	o := proxy.Options{}
	var trusted, upgrades, hostDomains string
	fs.StringVar(&o.Listen, "listen", ":8080", "address for traffic: HTTP/1.1 and h2c (HTTP/2 with prior knowledge)")
	fs.StringVar(&o.TLSListen, "tls-listen", ":8443", "address for HTTPS traffic (HTTP/1.1 and HTTP/2), used when --tls-cert-file and --tls-key-file are set")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", "", "PEM certificate (chain) for HTTPS")
	fs.StringVar(&o.TLSKeyFile, "tls-key-file", "", "PEM private key for HTTPS")
	fs.StringVar(&o.AdminListen, "admin-listen", ":9080", "address of /healthz, /readyz and /metrics")
	fs.StringVar(&hostDomains, "host-domains", "", "comma-separated domains whose hosts <slug>.<domain> are routed to <slug> by host name (Host, :authority, TLS server name), paths unchanged; other hosts keep path routing (default: none)")
	fs.StringVar(&trusted, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-*, Forwarded, X-Real-IP and other client-identity headers are kept (default: none; from other peers they are removed or replaced, see docs/security.md)")
	fs.StringVar(&upgrades, "allowed-upgrades", "websocket", "comma-separated protocols an HTTP/1.1 Upgrade may switch to (never h2c); other upgrades are forwarded as plain requests, without Upgrade")
	fs.IntVar(&o.MaxConnsPerInstance, "max-conns-per-instance", 0, "most connections (requests in flight) to one instance; over it, 503 with Retry-After (0: no cap)")
	fs.IntVar(&o.MaxClientConns, "max-client-conns", 0, "most client connections served at once per listener; more wait in the listen backlog (0: no cap)")
	fs.DurationVar(&o.BodyIdleTimeout, "body-idle-timeout", 30*time.Second, "longest pause between two reads of a streamed request body (one over 64 KiB, or chunked)")
	fs.IntVar(&o.MaxHeaderCount, "max-header-count", 100, "most request header fields accepted (more: 431)")
	fs.StringVar(&o.LBPolicy, "lb-policy", proxy.PolicyP2C, "load balancing: p2c (power of two choices on requests in flight) or round-robin")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", 2*time.Second, "timeout for connecting to an instance")
	fs.DurationVar(&o.ResponseHeaderTimeout, "response-header-timeout", 30*time.Second, "how long to wait for an instance's response headers before answering 504")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", 0, "limit on a whole request including its body (0: none, so that streams may last)")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 120*time.Second, "close idle client keep-alive connections after this long")
	fs.DurationVar(&o.UpstreamIdleTimeout, "upstream-idle-timeout", 90*time.Second, "close idle connections to instances after this long")
	fs.DurationVar(&o.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "limit on reading a request's headers")
	fs.IntVar(&o.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted (larger: 431)")
	fs.IntVar(&o.MaxResponseHeaderBytes, "max-response-header-bytes", 64<<10, "largest response head accepted from an instance, 1xx heads each (larger: 502)")
	fs.Int64Var(&o.MaxRequestBodyBytes, "max-request-body-bytes", 0, "largest request body accepted (larger: 413; 0: no limit)")
	fs.IntVar(&o.MaxRetries, "max-retries", 2, "further instances a failed request may be sent to (-1: none)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long to wait for requests in flight")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", 0, "on SIGTERM, keep serving this long with /readyz failing before draining")
	fs.BoolVar(&o.AccessLog, "access-log", false, "log one line per request")
	fs.BoolVar(&o.NetHTTPOnly, "net-http-only", false, "serve every plain connection with Go's net/http server, turning off the fast HTTP/1.1 front end (for comparison, or if it misbehaves)")
	fs.BoolVar(&o.Pprof, "pprof", false, "serve /debug/pprof/ on the admin address")
	fs.BoolVar(&o.Dashboard, "dashboard", false, "serve the live dashboard at /dashboard/ on the admin address (it shows instance URLs: keep the admin port internal)")
	var traceOpts tracing.Options
	tracing.BindFlags(fs, &traceOpts)
	com := bindCommon(fs,
		"comma-separated CIDRs the proxy never connects to, checked on every dial after DNS resolution (the SSRF guard; keep it equal to the controller's)",
		"let the proxy connect to instances on loopback addresses (127.0.0.0/8, ::1); for local development only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range splitList(trusted) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				return fmt.Errorf("--trusted-proxies: %q is not a CIDR (like 10.0.0.0/8) or an IP address", s)
			}
		}
		o.TrustedProxies = append(o.TrustedProxies, p.Masked())
	}
	o.HostDomains = splitList(hostDomains)
	o.AllowedUpgrades = splitList(upgrades)
	if o.AllowedUpgrades == nil {
		o.AllowedUpgrades = []string{} // none allowed (nil would mean the default)
	}
	guard, cfg, err := com.setup()
	if err != nil {
		return err
	}
	o.Dial = guard.DialContext
	o.Logger = ctrl.Log.WithName("proxy")

	ctx := ctrl.SetupSignalHandler()
	traceOpts.ServiceName = "slugway-proxy"
	if o.Tracing, err = tracing.New(ctx, traceOpts, "github.com/slugway/slugway/proxy"); err != nil {
		return err
	}
	defer func() { _ = o.Tracing.Shutdown(context.Background()) }() // exports the spans still buffered
	o.Logger.Info("starting proxy", "version", version, "tracing", o.Tracing != nil)
	return proxy.Run(ctx, cfg, o)
}
