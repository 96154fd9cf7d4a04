package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/proxy"
)

func TestWebSocketEcho(t *testing.T) {
	be := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) { _, _ = io.Copy(c, c) }))
	t.Cleanup(be.Close)
	createSlug(t, "ws")
	createInstance(t, "ws", "ws-1", be.URL, slugwayv1.HealthHealthy, "")
	p := startProxy(t, proxy.Options{})
	waitRoute(t, p, "ws", 1)

	c, err := websocket.Dial("ws://"+p.Addr()+"/ws/echo", "", "http://"+p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"hello", strings.Repeat("big ", 20000), "bye"} {
		if err := websocket.Message.Send(c, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg)) // the echo may split a message into several frames
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != msg {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
		}
	}
}

func TestServerSentEventsAreNotBuffered(t *testing.T) {
	next := make(chan struct{}, 3) // one token per event the client saw
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next: // the next event is sent only once the client saw this one
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(be.Close)
	createSlug(t, "sse")
	createInstance(t, "sse", "sse-1", be.URL, slugwayv1.HealthHealthy, "")
	p := startProxy(t, proxy.Options{})
	waitRoute(t, p, "sse", 1)

	resp, err := client1.Get("http://" + p.Addr() + "/sse/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := fmt.Sprintf("data: event %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
		_, _ = br.ReadString('\n')
		next <- struct{}{}
	}
}

// slugHealthDesc is the gRPC health service registered under "<slug>/grpc.health.v1.Health":
// the proxy forwards paths unchanged, so a gRPC service behind slug X answers
// /X/grpc.health.v1.Health/Check (see docs/proxy.md).
func slugHealthDesc(slug string) *grpc.ServiceDesc {
	d := healthpb.Health_ServiceDesc
	d.ServiceName = slug + "/" + d.ServiceName
	return &d
}

// slugPrefix is the client side: it puts the slug in front of every method.
func slugPrefix(slug string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(ctx, "/"+slug+method, req, reply, cc, opts...)
	}
}

func TestGRPCHealthOverH2C(t *testing.T) {
	l := listen(t)
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	gs.RegisterService(slugHealthDesc("grpc-svc"), hs)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	createSlug(t, "grpc-svc")
	createInstance(t, "grpc-svc", "grpc-1", "http://"+l.Addr().String(), slugwayv1.HealthHealthy, slugwayv1.AppProtocolH2C)
	p := startProxy(t, proxy.Options{})
	waitRoute(t, p, "grpc-svc", 1)

	cc, err := grpc.NewClient("passthrough:///"+p.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(slugPrefix("grpc-svc")))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v", resp.Status)
	}
	// An error status travels in the trailers (grpc-status): it must come through too.
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("unknown service: %v, want NotFound from the trailers", err)
	}
}

func protoServer(t *testing.T) *httptest.Server {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(be.Close)
	return be
}

func TestH2CAndTLSFromClients(t *testing.T) {
	be := protoServer(t)
	createSlug(t, "h2")
	createInstance(t, "h2", "h2-1", be.URL, slugwayv1.HealthHealthy, "")
	cert, key := selfSigned(t)
	p := startProxy(t, proxy.Options{TLSCertFile: cert, TLSKeyFile: key, TLSListener: listen(t)})
	waitRoute(t, p, "h2", 1)

	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	resp, err := c.Get("http://" + p.Addr() + "/h2/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "ok" {
		t.Fatalf("h2c: proto %s, body %q", resp.Proto, b)
	}

	tc := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err = tc.Get("https://" + p.TLSAddr() + "/h2/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "ok" {
		t.Fatalf("TLS: proto %s, body %q", resp.Proto, b)
	}
}

func selfSigned(t *testing.T) (certFile, keyFile string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return certFile, keyFile
}

func TestStreamingLargeBodies(t *testing.T) {
	const size = 64 << 20
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
			return
		}
		_, _ = io.CopyN(w, zeros{}, size) // unknown length: chunked
	}))
	t.Cleanup(be.Close)
	createSlug(t, "big")
	createInstance(t, "big", "big-1", be.URL, slugwayv1.HealthHealthy, "")
	p := startProxy(t, proxy.Options{})
	waitRoute(t, p, "big", 1)

	// Upload of unknown length (chunked), hashed on the far side.
	h := sha256.New()
	body := io.TeeReader(io.LimitReader(zeros{}, size), h)
	resp, err := client1.Post("http://"+p.Addr()+"/big/up", "application/octet-stream", struct{ io.Reader }{body})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %s", size, hex.EncodeToString(h.Sum(nil))); string(got) != want {
		t.Fatalf("upload: instance got %q, want %q", got, want)
	}
	resp, err = client1.Get("http://" + p.Addr() + "/big/down")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestClientCancellationCancelsUpstream(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	var startOnce, cancelOnce sync.Once
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		startOnce.Do(func() { close(started) })
		select {
		case <-r.Context().Done():
			cancelOnce.Do(func() { close(cancelled) })
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(be.Close)
	createSlug(t, "cancel")
	createInstance(t, "cancel", "cancel-1", be.URL, slugwayv1.HealthHealthy, "")
	p := startProxy(t, proxy.Options{})
	waitRoute(t, p, "cancel", 1)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr()+"/cancel/x", nil)
	go func() {
		<-started
		cancel()
	}()
	if _, err := client1.Do(req); err == nil {
		t.Fatal("the request was expected to be cancelled")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the instance's request was not cancelled when the client went away")
	}
}
