package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
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

// An instance's gRPC stream that breaks after the response began (here: the
// instance resets it) ends the client's call with a gRPC status in the
// trailers: DEADLINE_EXCEEDED once the call's grpc-timeout passed (what a gRPC
// server's reset at its deadline means), UNAVAILABLE before. A response that is
// not gRPC is still reset.
func TestGRPCBrokenStreamEndsWithStatus(t *testing.T) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	up := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte{0, 0, 0, 0, 1, 'x'}) // one gRPC message
		w.(http.Flusher).Flush()
		if d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok {
			time.Sleep(d + 50*time.Millisecond) // the proxy saw the call start before we did
		}
		panic(http.ErrAbortHandler) // RST_STREAM, no status
	})}
	ul, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = up.Serve(ul) }()
	t.Cleanup(func() { up.Close() })
	// Traced: a broken response is an error in its span, whether or not a gRPC status ends it.
	h, rcv, tracer := tracedHandler(t, Options{HostDomains: []string{"test"}})
	h.SetTable(&routes.Table{Routes: map[string]*routes.Route{"g": {Slug: "g", Endpoints: []routes.Endpoint{{Key: "ns/g", Scheme: "http", Host: ul.Addr().String(), H2C: true, Health: slugwayv1.HealthHealthy}}}}})
	srv := &http.Server{Handler: h, Protocols: &p}
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(pl) }()
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Transport: &http.Transport{Protocols: &p}}

	for i, tc := range []struct {
		name, contentType, timeout string
		status, message            string // the trailers; "" for a reset
	}{
		{"deadline passed", "application/grpc", "100m", "4", "grpc-timeout (100ms) passed"},
		{"no deadline", "application/grpc+proto", "", "14", "the instance's stream broke"},
		{"not gRPC", "application/octet-stream", "", "", ""},
	} {
		traceID := fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e47%02d", i)
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://g.test/grpc.testing.TestService/StreamingOutputCall", strings.NewReader("\x00\x00\x00\x00\x00"))
			req.URL.Host = pl.Addr().String()
			req.Host = "g.test"
			req.Header.Set("Content-Type", tc.contentType)
			req.Header.Set("Te", "trailers")
			req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
			if tc.timeout != "" {
				req.Header.Set("Grpc-Timeout", tc.timeout)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if string(body) != "\x00\x00\x00\x00\x01x" {
				t.Errorf("body %q, want the instance's one message", body)
			}
			defer func() {
				sp := span(t, rcv, tracer, traceID)
				if sp.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
					t.Errorf("span status %v, want an error: the response broke", sp.Status)
				}
				if got, want := sp.Attr("slugway.aborted"), strconv.FormatBool(tc.status == ""); got != want {
					t.Errorf("slugway.aborted %s, want %s", got, want)
				}
			}()
			if tc.status == "" {
				if err == nil {
					t.Fatalf("the body ended cleanly (trailers %v), want the stream reset", resp.Trailer)
				}
				return
			}
			if err != nil {
				t.Fatalf("reading the body: %v, want it to end with trailers", err)
			}
			if got := resp.Trailer.Get("Grpc-Status"); got != tc.status {
				t.Errorf("grpc-status %q, want %s (trailers %v)", got, tc.status, resp.Trailer)
			}
			if got := resp.Trailer.Get("Grpc-Message"); !strings.Contains(got, tc.message) {
				t.Errorf("grpc-message %q, want it to contain %q", got, tc.message)
			}
		})
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "300m": 300 * time.Millisecond,
		"299987u": 299987 * time.Microsecond, "10n": 10, "99999999S": 99999999 * time.Second,
	} {
		if got, ok := parseGRPCTimeout(v); !ok || got != want {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "S", "1", "1s", "123456789S", "+1S", "-1S", "1.5S", "99999999H" /* overflows */} {
		if got, ok := parseGRPCTimeout(v); ok {
			t.Errorf("parseGRPCTimeout(%q) = %v, want it refused", v, got)
		}
	}
	if got := grpcMessage("50% off\r\nü"); got != "50%25 off%0D%0A%C3%BC" {
		t.Errorf("grpcMessage = %q", got)
	}
}
