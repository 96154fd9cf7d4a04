package proxy

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/examples/grpc-svc/grpcsvc"
	"github.com/slugway/slugway/proxy/routes"
)

// A gRPC stream the server ends (with a status) while the client is still
// sending: the status reaches the client at once, in the trailers.
func TestGRPCServerEndsStreamFirst(t *testing.T) {
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	gs, _ := grpcsvc.NewServer("x")
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	h := NewHandler(Options{HostDomains: []string{"test"}})
	h.SetTable(&routes.Table{Routes: map[string]*routes.Route{"g": {Slug: "g", Endpoints: []routes.Endpoint{{Key: "ns/g", Scheme: "http", Host: gl.Addr().String(), H2C: true, Health: slugwayv1.HealthHealthy}}}}})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(pl) }()
	t.Cleanup(func() { srv.Close() })

	cc, err := grpc.NewClient("passthrough:///"+pl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("g.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := testpb.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.ResourceExhausted), Message: "enough"}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "enough") {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
}
