package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcAuthority is how the walkthrough reaches examples/grpc-svc: by host name,
// <slug>.localhost, through the proxy's --host-domains localhost.
const grpcAuthority = "grpc-svc.localhost"

// waitForGRPC waits until grpc-svc's health service answers SERVING through
// the proxy, dialled exactly as the printed grpcurl command does.
func waitForGRPC(ctx context.Context, proxyAddr string, timeout time.Duration) error {
	cc, err := grpc.NewClient("passthrough:///"+proxyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(grpcAuthority))
	if err != nil {
		return err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("grpc-svc's health service did not answer through the proxy (authority %s) within %s (last: %v)", grpcAuthority, timeout, last)
}

// grpcWalkthrough is the walkthrough's gRPC part: grpcurl (hack/controlplane.sh
// builds it beside kubectl) dialling the proxy, with grpc-svc's host name as authority.
func grpcWalkthrough(proxyAddr string) string {
	g := "grpcurl -plaintext -authority " + grpcAuthority + " " + proxyAddr
	return `
  # gRPC, by host name: examples/grpc-svc is a stock grpc-go server (grpcurl is on the
  # PATH above, built by hack/controlplane.sh)
  ` + g + ` grpc.health.v1.Health/Check
  ` + g + ` list
  grpcurl -plaintext -authority ` + grpcAuthority + ` -d '{"response_size": 5}' ` + proxyAddr + ` grpc.testing.TestService/UnaryCall
`
}

// proxyPort is the port of the proxy's address, for URLs by host name.
func proxyPort(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "8080"
	}
	return port
}
