// Package proxy is slugway's data plane. It watches Instances and
// ServiceAccounts, turns them into a route table (package routes), and routes
// /<slug>/... to the slug's healthy instances, path unchanged.
//
// Two servers parse requests: the front end (front.go, front_conn.go), which
// serves plain HTTP/1.1 from the raw bytes, and net/http (server_nethttp.go)
// for everything else: HTTP/2, h2c, TLS, upgrades, HTTP/1.0, streamed bodies.
// Each fills a request (request.go) and a responder, and hands them to the
// one pipeline (pipeline.go), whose steps are files:
//
//   - route.go: the route lookup (slugpath parses the target; the live
//     table is read without a lock), or the proxy's own answer;
//   - pipeline.go: limits, then forward: one attempt per backend;
//   - balancer.go: backends, p2c or round-robin picks, passive ejection;
//   - retry.go: whether a failed attempt goes to another backend, and the
//     retry budget;
//   - upstream_client.go: the one HTTP/1.1 client to http:// instances,
//     on connections from upstream_pool.go (liveness checks in alive_*.go);
//     transport.go: net/http's Transport where it must be (h2c and https
//     instances, upgrades in upgrade.go);
//   - headers.go: the header policy both ways;
//   - relay.go: the response back to the client (front_responder.go writes
//     bytes, server_nethttp.go a ResponseWriter);
//   - errors.go: every answer the proxy gives itself, and how failures are
//     classified;
//   - observe.go: metrics (metrics.go) and the access log, once per request.
//
// watch.go feeds the route table, handler.go binds it to live backends,
// and this file runs the servers.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
	"k8s.io/client-go/rest"

	"github.com/slugway/slugway/proxy/framing"
)

// Proxy is a running data plane: the watcher, the handler and its servers.
type Proxy struct {
	opts    Options
	log     logr.Logger
	handler *Handler
	watcher *watcher
	ready   atomic.Bool
	dash    *dashboardSource // nil unless Options.Dashboard

	ln, tlsLn, adminLn net.Listener
}

// Run starts the proxy and blocks until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	p, err := New(cfg, o)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// New binds the listeners and prepares the watcher; Run starts everything.
func New(cfg *rest.Config, o Options) (*Proxy, error) {
	o.defaults()
	if o.LBPolicy != PolicyP2C && o.LBPolicy != PolicyRoundRobin {
		return nil, fmt.Errorf("unknown load-balancing policy %q: use %q or %q", o.LBPolicy, PolicyP2C, PolicyRoundRobin)
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return nil, errors.New("TLS needs both a certificate and a key file (--tls-cert-file and --tls-key-file)")
	}
	p := &Proxy{opts: o, log: o.Logger, handler: NewHandler(o)}
	if err := p.handler.hostErr; err != nil {
		return nil, fmt.Errorf("--host-domains: %w", err)
	}
	p.dash = newDashboardSource(p, &o)
	w, err := newWatcher(cfg, p.handler, o)
	if err != nil {
		return nil, err
	}
	p.watcher = w
	listen := func(l net.Listener, addr, what string) (net.Listener, error) {
		if l != nil {
			return l, nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listening for %s on %s: %w (pick another address with its flag)", what, addr, err)
		}
		return l, nil
	}
	if p.ln, err = listen(o.Listener, o.Listen, "traffic"); err != nil {
		return nil, err
	}
	if o.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile); err != nil {
			p.ln.Close()
			return nil, fmt.Errorf("loading the TLS certificate: %w", err)
		}
		if p.tlsLn, err = listen(o.TLSListener, o.TLSListen, "TLS traffic"); err != nil {
			p.ln.Close()
			return nil, err
		}
	}
	if p.adminLn, err = listen(o.AdminListener, o.AdminListen, "the admin endpoints"); err != nil {
		p.ln.Close()
		if p.tlsLn != nil {
			p.tlsLn.Close()
		}
		return nil, err
	}
	return p, nil
}

// Addr is the plain traffic address; TLSAddr the TLS one ("" without TLS); AdminAddr the admin one.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// TLSAddr is the address of the TLS listener, or "" when TLS is off.
func (p *Proxy) TLSAddr() string {
	if p.tlsLn == nil {
		return ""
	}
	return p.tlsLn.Addr().String()
}

// AdminAddr is the address of /healthz, /readyz and /metrics.
func (p *Proxy) AdminAddr() string { return p.adminLn.Addr().String() }

// Handler is the data-plane handler (tests inspect its table and metrics).
func (p *Proxy) Handler() *Handler { return p.handler }

// Ready reports whether the caches synced and the first route table is serving.
func (p *Proxy) Ready() bool { return p.ready.Load() }

// Run serves until ctx is cancelled. Then /readyz fails, and after ShutdownDelay
// the listeners close, requests in flight drain (up to DrainTimeout), upgraded
// connections are closed, and Run returns.
func (p *Proxy) Run(ctx context.Context) error {
	o := p.opts
	errc := make(chan error, 4)
	admin := &http.Server{Handler: p.adminMux(), ReadHeaderTimeout: 5 * time.Second}
	go func() { errc <- serveErr("admin", admin.Serve(p.adminLn)) }()

	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- p.watcher.run(wctx, func() { p.ready.Store(true); p.log.Info("route table ready") })
	}()

	errorLog := log.New(logWriter{p.log.WithName("http")}, "", 0)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	protos.SetHTTP2(true)
	// While draining, HTTP/1 responses served by net/http end their connection too (see
	// front.draining); HTTP/2 clients get GOAWAY from Shutdown.
	var draining atomic.Bool
	drainAware := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && draining.Load() {
			w.Header().Set("Connection", "close")
		}
		p.handler.ServeHTTP(w, r)
	})
	newServer := func() *http.Server {
		return &http.Server{
			Handler:           drainAware,
			ConnContext:       framing.ConnContext, // the TLS state of HTTP/1.x over TLS (framing.TLSListener)
			ReadHeaderTimeout: o.ReadHeaderTimeout,
			IdleTimeout:       o.IdleTimeout,
			MaxHeaderBytes:    o.MaxHeaderBytes,
			Protocols:         &protos,
			ErrorLog:          errorLog,
		}
	}
	plain := newServer()
	servers := []*http.Server{plain}
	var fe *front
	ln, tlsLn := p.ln, p.tlsLn
	if o.MaxClientConns > 0 { // --max-client-conns: further connections wait in the backlog
		ln = netutil.LimitListener(ln, o.MaxClientConns)
		if tlsLn != nil {
			tlsLn = netutil.LimitListener(tlsLn, o.MaxClientConns)
		}
	}
	maxHead := framing.MaxHead(o.MaxHeaderBytes)
	// Every HTTP/1.x connection net/http serves gets the front end's framing
	// rules (package framing): the handed-off ones (front.handoff), the plain
	// ones without the front end, and those over TLS.
	var plainLn net.Listener = &framing.Listener{Listener: ln, MaxHead: maxHead, OnRefuse: p.handler.countRefused}
	if p.fastFront() {
		// The fast front end accepts the connections and hands net/http those it does not serve.
		slow := newChanListener(p.ln.Addr())
		fe, plainLn = newFront(p.handler, slow), slow
		go func() { errc <- serveErr("traffic", fe.serve(ln)) }()
	}
	go func() { errc <- serveErr("traffic", plain.Serve(plainLn)) }()
	if tlsLn != nil {
		s := newServer()
		servers = append(servers, s)
		if cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile); err != nil {
			errc <- fmt.Errorf("loading the TLS certificate: %w", err)
		} else {
			// The proxy terminates TLS itself (framing.TLSListener) so that
			// HTTP/1.x over TLS is checked like plaintext; h2 goes to net/http as is.
			cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
			tl := framing.NewTLSListener(tlsLn, cfg, maxHead, o.ReadHeaderTimeout, p.handler.countRefused)
			go func() { errc <- serveErr("TLS traffic", s.Serve(tl)) }()
		}
	}
	p.log.Info("proxy listening", "addr", p.Addr(), "tls", p.TLSAddr(), "admin", p.AdminAddr(), "lbPolicy", o.LBPolicy, "hostDomains", p.handler.hosts.Names())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case runErr = <-watchDone:
		if runErr == nil {
			runErr = errors.New("the route watcher stopped")
		}
	}
	p.ready.Store(false)
	draining.Store(true)
	if fe != nil {
		fe.draining.Store(true)
	}
	p.log.Info("shutting down: draining requests in flight", "delay", o.ShutdownDelay, "drainTimeout", o.DrainTimeout)
	if runErr == nil && o.ShutdownDelay > 0 {
		time.Sleep(o.ShutdownDelay)
	}
	dctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	if fe != nil {
		p.ln.Close()
		wg.Go(func() {
			if err := fe.shutdown(dctx.Done()); err != nil {
				p.log.Info("drain incomplete, closing connections", "error", err.Error())
			}
		})
	}
	for _, s := range servers {
		wg.Go(func() {
			if err := s.Shutdown(dctx); err != nil {
				p.log.Info("drain incomplete, closing connections", "error", err.Error())
				s.Close()
			}
		})
	}
	wg.Wait()
	p.handler.closeUpgraded()
	stopWatch()
	<-watchDone
	_ = admin.Shutdown(dctx)
	return runErr
}

// fastFront reports whether the fast HTTP/1.1 front end serves the plain
// listener. It does not bound whole requests, so RequestTimeout turns it off.
func (p *Proxy) fastFront() bool {
	return !p.opts.NetHTTPOnly && p.opts.RequestTimeout == 0
}

func serveErr(what string, err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s server: %w", what, err)
}

func (p *Proxy) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.ready.Load() {
			http.Error(w, "not ready: the route table is not built yet (or the proxy is shutting down)", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(p.handler.Registry(), promhttp.HandlerOpts{}))
	p.dash.mount(mux)
	if p.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// logWriter sends net/http's own log lines (TLS handshake errors and such) to logr.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	w.log.V(1).Info(string(b))
	return len(b), nil
}
