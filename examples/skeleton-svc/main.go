// Command skeleton-svc is the smallest slugway service: it answers
// GET /skeleton-svc/hello with {"hello": "world"}, and registers itself as the
// slug "skeleton-svc" through the Go SDK with its own Kubernetes identity.
//
// In a pod it reads SELF_URL, POD_NAME, POD_NAMESPACE and POD_UID from the downward
// API (see deploy.yaml). Out of cluster:
//
//	KUBECONFIG=... SELF_URL=http://127.0.0.1:9311 go run ./examples/skeleton-svc
//
// LISTEN_ADDR (default ":9311") is where it listens. SIGTERM or SIGINT deregisters
// the instance first, so the proxy stops sending traffic, then drains connections.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/slugway/slugway/sdk"
)

const (
	slug        = "skeleton-svc"
	displayName = "Skeleton Svc"
)

func main() {
	log := zap.New()
	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = ":9311"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error(err, "cannot listen: set LISTEN_ADDR to a free address", "addr", addr)
		os.Exit(1)
	}
	if err := run(ctx, ln, sdk.Options{Slug: slug, DisplayName: displayName, Logger: log}, log); err != nil {
		log.Error(err, "skeleton-svc stopped")
		os.Exit(1)
	}
}

// handler serves the service's API and its health check.
func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+slug+"/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"hello": "world"})
	})
	// The Instance's default health check: GET <url>/healthz.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// run serves on ln and keeps the service registered until ctx ends, then
// deregisters and shuts the server down. A registration refused for good (the
// slug belongs to another identity) is returned as an error.
func run(ctx context.Context, ln net.Listener, opts sdk.Options, log logr.Logger) error {
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	// Register retries an unreachable apiserver until ctx ends; meanwhile we serve.
	reg, err := sdk.Register(ctx, opts)
	if err != nil {
		shutdown(srv)
		if ctx.Err() != nil {
			return nil // stopped before registration finished
		}
		return fmt.Errorf("registering slug %q: %w", opts.Slug, err)
	}

	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serving: %w", err)
	}
	// Deregister before draining, so the proxy stops routing here first.
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cerr := reg.Close(cctx); cerr != nil {
		log.Error(cerr, "deregistering failed; the instance stays until its pod is deleted or it turns Unreachable")
	}
	shutdown(srv)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
