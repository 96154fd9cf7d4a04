// Command grpc-svc is a stock gRPC service behind slugway: gRPC's interop test
// service (grpc.testing.TestService: unary, server-streaming, client-streaming
// and bidirectional calls, errors on request), the standard health service and
// server reflection, each under its own name (package grpcsvc). It registers
// itself as the slug "grpc-svc" (appProtocol h2c, a TCP health check) through
// the Go SDK with its own Kubernetes identity, and is reached through the proxy
// by host name, paths unchanged:
//
//	grpcurl -plaintext -authority grpc-svc.localhost 127.0.0.1:8080 grpc.health.v1.Health/Check
//
// In a pod it reads SELF_URL, POD_NAME, POD_NAMESPACE and POD_UID from the
// downward API, as examples/skeleton-svc does. Out of cluster:
//
//	KUBECONFIG=... SELF_URL=http://127.0.0.1:9312 go run ./examples/grpc-svc
//
// LISTEN_ADDR (default ":9312") is where it listens. SIGTERM or SIGINT
// deregisters the instance first, so the proxy stops sending calls, then the
// server finishes the calls in flight (GracefulStop).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/examples/grpc-svc/grpcsvc"
	"github.com/slugway/slugway/sdk"
)

const (
	slug        = "grpc-svc"
	displayName = "gRPC Svc"
)

func main() {
	log := zap.New()
	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = ":9312"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error(err, "cannot listen: set LISTEN_ADDR to a free address", "addr", addr)
		os.Exit(1)
	}
	if err := run(ctx, ln, registration(), log); err != nil {
		log.Error(err, "grpc-svc stopped")
		os.Exit(1)
	}
}

// registration is how grpc-svc registers: the proxy speaks HTTP/2 with prior
// knowledge (h2c) to it, and the controller checks that it accepts connections
// (a gRPC server answers no HTTP/1.1 health check).
func registration() sdk.Options {
	return sdk.Options{
		Slug:        slug,
		DisplayName: displayName,
		AppProtocol: slugwayv1.AppProtocolH2C,
		HealthCheck: slugwayv1.HealthCheck{Type: slugwayv1.HealthCheckTCP},
	}
}

// run serves on ln and keeps the service registered until ctx ends, then
// deregisters and stops the server gracefully. A registration refused for good
// (the slug belongs to another identity) is returned as an error.
func run(ctx context.Context, ln net.Listener, opts sdk.Options, log logr.Logger) error {
	host, _ := os.Hostname()
	srv, hs := grpcsvc.NewServer(host)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	opts.Logger = log
	reg, err := sdk.Register(ctx, opts)
	if err != nil {
		srv.Stop()
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
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cerr := reg.Close(cctx); cerr != nil {
		log.Error(cerr, "deregistering failed; the instance stays until its pod is deleted or it turns Unreachable")
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		srv.Stop() // a stream that does not end by itself
	}
	return err
}
