package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/examples/grpc-svc/grpcsvc"
	"github.com/slugway/slugway/proxy"
)

// The gRPC tests: examples/grpc-svc's stock grpc-go server (its services under
// their own names) behind slug grpc-host, and a stock grpc-go client that
// chooses only its dial target (the proxy) and authority (grpc-host.grpc.test),
// over h2c on --listen and over TLS (a *.grpc.test certificate, h2 by ALPN) on
// --tls-listen.

const grpcDomain = "grpc.test"

// endedCalls records how each call ended on the server, by method, so that
// tests can see a client's deadline or cancellation reach the instance.
type endedCalls struct {
	mu   sync.Mutex
	ch   map[string]chan codes.Code
	seen map[string][]codes.Code
}

func (e *endedCalls) done(method string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen[method] = append(e.seen[method], grpcstatus.Code(err))
	if ch := e.ch[method]; ch != nil {
		select {
		case ch <- grpcstatus.Code(err):
		default:
		}
	}
}

// next returns a channel receiving the code of method's next call to end.
func (e *endedCalls) next(method string) <-chan codes.Code {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := make(chan codes.Code, 1)
	e.ch[method] = ch
	return ch
}

type grpcFixture struct {
	p      *proxy.Proxy
	ended  *endedCalls
	caPool *x509.CertPool
}

func startGRPCFixture(t *testing.T) *grpcFixture {
	t.Helper()
	ended := &endedCalls{ch: map[string]chan codes.Code{}, seen: map[string][]codes.Code{}}
	srv, _ := grpcsvc.NewServer("grpc-host-1",
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			ended.done(info.FullMethod, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			err := h(srv, ss)
			if err == nil && ss.Context().Err() != nil {
				err = grpcstatus.FromContextError(ss.Context().Err()).Err()
			}
			ended.done(info.FullMethod, err)
			return err
		}))
	l := listen(t)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	createSlug(t, "grpc-host")
	createInstance(t, "grpc-host", "grpc-host-1", "http://"+l.Addr().String(), slugwayv1.HealthHealthy, slugwayv1.AppProtocolH2C)
	pool, cert, key := wildcardCert(t, grpcDomain)
	p := startProxy(t, proxy.Options{HostDomains: []string{grpcDomain}, TLSCertFile: cert, TLSKeyFile: key, TLSListener: listen(t)})
	waitRoute(t, p, "grpc-host", 1)
	return &grpcFixture{p: p, ended: ended, caPool: pool}
}

// dial is a stock client: only the target and the authority are chosen. Over
// TLS the authority is also the server name (SNI) and checked against the certificate.
func (f *grpcFixture) dial(t *testing.T, tr, authority string) *grpc.ClientConn {
	t.Helper()
	target, creds := f.p.Addr(), insecure.NewCredentials()
	if tr == "tls" {
		target, creds = f.p.TLSAddr(), credentials.NewTLS(&tls.Config{RootCAs: f.caPool})
	}
	cc, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(creds), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGRPCByHost(t *testing.T) {
	f := startGRPCFixture(t)
	for _, tr := range []string{"h2c", "tls"} {
		t.Run(tr, func(t *testing.T) {
			cc := f.dial(t, tr, "grpc-host."+grpcDomain)
			tc := testpb.NewTestServiceClient(cc)

			t.Run("unary", func(t *testing.T) {
				var hdr, trl metadata.MD
				ctx := metadata.AppendToOutgoingContext(callCtx(t), grpcsvc.EchoInitial, "hello", grpcsvc.EchoTrailer, "\x00bye")
				resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 314, Payload: &testpb.Payload{Body: []byte("ping")}},
					grpc.Header(&hdr), grpc.Trailer(&trl))
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.GetPayload().GetBody()) != 314 || resp.GetServerId() != "grpc-host-1" {
					t.Errorf("response: %d bytes from %q, want 314 from grpc-host-1", len(resp.GetPayload().GetBody()), resp.GetServerId())
				}
				if got := hdr.Get(grpcsvc.EchoInitial); len(got) != 1 || got[0] != "hello" {
					t.Errorf("header metadata %v, want %s: hello", hdr, grpcsvc.EchoInitial)
				}
				if got := trl.Get(grpcsvc.EchoTrailer); len(got) != 1 || got[0] != "\x00bye" {
					t.Errorf("trailer metadata %v, want the binary %s", trl, grpcsvc.EchoTrailer)
				}
				if _, err := tc.EmptyCall(callCtx(t), &testpb.Empty{}); err != nil {
					t.Errorf("EmptyCall: %v", err)
				}
			})

			t.Run("server-streaming", func(t *testing.T) {
				req := &testpb.StreamingOutputCallRequest{}
				for i := range 20 {
					req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: int32(1 + i*1000)})
				}
				stream, err := tc.StreamingOutputCall(callCtx(t), req)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 20 {
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("response %d: %v", i, err)
					}
					if n := len(resp.GetPayload().GetBody()); n != 1+i*1000 {
						t.Fatalf("response %d: %d bytes, want %d", i, n, 1+i*1000)
					}
				}
				if _, err := stream.Recv(); err != io.EOF {
					t.Fatalf("after the last response: %v, want EOF (grpc-status 0)", err)
				}
			})

			t.Run("client-streaming", func(t *testing.T) {
				stream, err := tc.StreamingInputCall(callCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{1, 10, 100, 100000} {
					if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}); err != nil {
						t.Fatal(err)
					}
				}
				resp, err := stream.CloseAndRecv()
				if err != nil || resp.GetAggregatedPayloadSize() != 100111 {
					t.Fatalf("aggregated size %d, %v; want 100111", resp.GetAggregatedPayloadSize(), err)
				}
			})

			t.Run("bidi", func(t *testing.T) {
				// Ping-pong: each request is sent only after the previous answer came
				// back, so nothing on the way may hold messages back.
				stream, err := tc.FullDuplexCall(callCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				for i := range 50 {
					msg := []byte(strings.Repeat("x", i))
					if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: msg}}); err != nil {
						t.Fatal(err)
					}
					resp, err := stream.Recv()
					if err != nil {
						t.Fatalf("round %d: %v", i, err)
					}
					if string(resp.GetPayload().GetBody()) != string(msg) {
						t.Fatalf("round %d: echo of %d bytes came back as %d", i, len(msg), len(resp.GetPayload().GetBody()))
					}
				}
				if err := stream.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != io.EOF {
					t.Fatalf("after CloseSend: %v, want EOF", err)
				}
			})

			t.Run("errors-and-trailers", func(t *testing.T) {
				var trl metadata.MD
				_, err := tc.UnaryCall(callCtx(t), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "the answer is no: ünïcode % and \r\n"}},
					grpc.Trailer(&trl))
				st := grpcstatus.Convert(err)
				if st.Code() != codes.FailedPrecondition || st.Message() != "the answer is no: ünïcode % and \r\n" {
					t.Errorf("unary error: %v, want FailedPrecondition with the message intact (grpc-status, grpc-message)", err)
				}
				if got := trl.Get(grpcsvc.ErrorTrailer); len(got) != 1 || got[0] != "requested" {
					t.Errorf("trailers of the error: %v, want %s: requested", trl, grpcsvc.ErrorTrailer)
				}

				// On a stream, after messages: the status still arrives in the trailers.
				stream, err := tc.FullDuplexCall(callCtx(t))
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
				if st := grpcstatus.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "enough" {
					t.Errorf("stream error: %v, want ResourceExhausted: enough", err)
				}
				if got := stream.Trailer().Get(grpcsvc.ErrorTrailer); len(got) != 1 {
					t.Errorf("stream trailers %v, want %s", stream.Trailer(), grpcsvc.ErrorTrailer)
				}

				// A method the server lacks: its own Unimplemented, not a proxy error.
				_, err = tc.UnimplementedCall(callCtx(t), &testpb.Empty{})
				if grpcstatus.Code(err) != codes.Unimplemented {
					t.Errorf("UnimplementedCall: %v, want Unimplemented from the server", err)
				}
			})

			t.Run("deadline", func(t *testing.T) {
				ended := f.ended.next("/grpc.testing.TestService/StreamingOutputCall")
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
				stream, err := tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
					ResponseParameters: []*testpb.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 60e6}},
				})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatalf("first response: %v", err)
				}
				if _, err := stream.Recv(); grpcstatus.Code(err) != codes.DeadlineExceeded {
					t.Fatalf("second response: %v, want DeadlineExceeded", err)
				}
				// grpc-timeout reached the server: its call ended by the deadline, not after 60s.
				select {
				case c := <-ended:
					if c != codes.DeadlineExceeded && c != codes.Canceled {
						t.Errorf("the server's call ended with %v, want DeadlineExceeded (or Canceled, if the proxy's reset came first)", c)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the server's call did not end after the client's deadline passed")
				}
			})

			t.Run("cancellation", func(t *testing.T) {
				ended := f.ended.next("/grpc.testing.TestService/FullDuplexCall")
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				stream, err := tc.FullDuplexCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
				cancel() // the client gives up on an open stream: RST_STREAM(CANCEL) to the proxy
				if _, err := stream.Recv(); grpcstatus.Code(err) != codes.Canceled {
					t.Errorf("after cancel: %v, want Canceled", err)
				}
				select {
				case c := <-ended:
					if c != codes.Canceled {
						t.Errorf("the server's call ended with %v, want Canceled", c)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("cancelling the client's stream did not cancel the server's")
				}
			})

			t.Run("4MiB", func(t *testing.T) {
				// Messages of exactly 4 MiB, gRPC's default limit on both sides:
				// no option raised anywhere.
				const limit = 4 << 20
				resp := &testpb.SimpleResponse{Payload: &testpb.Payload{}, ServerId: "grpc-host-1"}
				sizeTo(t, resp, &resp.Payload.Body, limit)
				req := &testpb.SimpleRequest{ResponseSize: int32(len(resp.Payload.Body)), Payload: &testpb.Payload{}}
				sizeTo(t, req, &req.Payload.Body, limit)
				got, err := tc.UnaryCall(callCtx(t), req)
				if err != nil {
					t.Fatalf("unary, %d bytes each way: %v", proto.Size(req), err)
				}
				if proto.Size(got) != limit {
					t.Errorf("unary response %d bytes, want %d", proto.Size(got), limit)
				}

				stream, err := tc.FullDuplexCall(callCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				echo := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{}}
				sizeTo(t, echo, &echo.Payload.Body, limit)
				for i := range 3 {
					if err := stream.Send(echo); err != nil {
						t.Fatal(err)
					}
					back, err := stream.Recv()
					if err != nil {
						t.Fatalf("bidi echo %d: %v", i, err)
					}
					if len(back.GetPayload().GetBody()) != len(echo.Payload.Body) {
						t.Fatalf("bidi echo %d: %d bytes back, want %d", i, len(back.GetPayload().GetBody()), len(echo.Payload.Body))
					}
				}
				_ = stream.CloseSend()
			})

			t.Run("health", func(t *testing.T) {
				hc := healthpb.NewHealthClient(cc)
				for _, svc := range []string{"", "grpc.testing.TestService"} {
					resp, err := hc.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: svc})
					if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
						t.Errorf("Check(%q): %v, %v; want SERVING", svc, resp.GetStatus(), err)
					}
				}
				if _, err := hc.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: "nope"}); grpcstatus.Code(err) != codes.NotFound {
					t.Errorf("Check(nope): %v, want NotFound", err)
				}
				w, err := hc.Watch(callCtx(t), &healthpb.HealthCheckRequest{Service: ""})
				if err != nil {
					t.Fatal(err)
				}
				if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Errorf("Watch: %v, %v; want SERVING", resp.GetStatus(), err)
				}
			})
		})
	}

	t.Run("metrics", func(t *testing.T) {
		// Every call above was counted under its slug, as path-routed requests are.
		m := metricsText(t, f.p)
		for _, want := range []string{`slugway_proxy_requests_total{code="200",slug="grpc-host"}`, `slugway_proxy_request_duration_seconds_count{slug="grpc-host"}`} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %q:\n%s", want, grep(m, "slug=\"grpc-host\""))
			}
		}
	})
}

// TestGRPCByHostErrors: what a stock client sees for hosts the proxy cannot route.
func TestGRPCByHostErrors(t *testing.T) {
	f := startGRPCFixture(t)
	for _, tr := range []string{"h2c", "tls"} {
		t.Run(tr, func(t *testing.T) {
			// A slug that does not exist: the proxy's 404, which gRPC reports as Unimplemented.
			hc := healthpb.NewHealthClient(f.dial(t, tr, "nope."+grpcDomain))
			_, err := hc.Check(callCtx(t), &healthpb.HealthCheckRequest{})
			if st := grpcstatus.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "404") {
				t.Errorf("unknown slug: %v, want Unimplemented from HTTP 404", err)
			}
			if tr == "h2c" {
				// Without a host-routed authority, path routing: /grpc.health.v1.Health is not a slug.
				hc = healthpb.NewHealthClient(f.dial(t, tr, "proxy.example.org"))
				_, err = hc.Check(callCtx(t), &healthpb.HealthCheckRequest{})
				if st := grpcstatus.Convert(err); st.Code() == codes.OK || !strings.Contains(st.Message(), "400") {
					t.Errorf("not host-routed: %v, want the path-routing error (HTTP 400: the first segment is not a slug)", err)
				}
			}
			// (A server name and an authority naming different slugs, 421, cannot be
			// made with grpc-go, which refuses such a connection itself: host_routing_test.go covers it.)
		})
	}
}

// sizeTo grows body until m is size bytes encoded.
func sizeTo(t *testing.T, m proto.Message, body *[]byte, size int) {
	t.Helper()
	*body = make([]byte, size-proto.Size(m)-8)
	for proto.Size(m) < size {
		*body = append(*body, 'a')
	}
	if proto.Size(m) != size {
		t.Fatalf("fixture: a %d-byte message, want %d", proto.Size(m), size)
	}
}

// wildcardCert makes a CA and a certificate for *.domain signed by it, and
// returns the pool trusting the CA and the certificate's and key's files.
func wildcardCert(t *testing.T, domain string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slugway test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "*." + domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"*." + domain}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := errors.Join(
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600),
	); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, certFile, keyFile
}
