// Command benchotlp is the OTLP gRPC trace receiver hack/bench-proxy.sh exports the
// slugway-trace targets' spans to: the collector's TraceService from the official
// protobuf packages (go.opentelemetry.io/proto/otlp) over grpc-go, on loopback. It
// keeps no span, only counts them per service.name (so that a benchmark of millions
// of requests does not grow it), serves the counts as text on -stats, and prints them
// when it ends (SIGTERM or SIGINT).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// counter is the TraceService: it counts the spans and export calls per service.name.
type counter struct {
	coltracepb.UnimplementedTraceServiceServer
	mu      sync.Mutex
	spans   map[string]int64
	exports map[string]int64
}

func (c *counter) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := "(no service.name)"
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans[svc] += int64(len(ss.GetSpans()))
		}
		c.exports[svc]++
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// write prints one line per service: "<service.name> spans <n> exports <n>", sorted.
func (c *counter) write(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.spans))
	for n := range c.spans {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "%s spans %d exports %d\n", n, c.spans[n], c.exports[n])
	}
}

// loopback refuses an address that is not a loopback IP: the benchmark stays on this machine.
func loopback(flagName, addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("-%s %q: want a loopback ip:port, like 127.0.0.1:28089", flagName, addr)
	}
	return nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:4317", "the OTLP gRPC address (loopback only)")
	stats := flag.String("stats", "", "also serve the counts as text over HTTP here (loopback only; empty: off)")
	flag.Parse()
	log.SetFlags(0)
	if err := loopback("listen", *listen); err != nil {
		log.Fatal(err)
	}
	c := &counter{spans: map[string]int64{}, exports: map[string]int64{}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	if *stats != "" {
		if err := loopback("stats", *stats); err != nil {
			log.Fatal(err)
		}
		sln, err := net.Listen("tcp", *stats)
		if err != nil {
			log.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /spans", func(w http.ResponseWriter, _ *http.Request) { c.write(w) })
		go func() { log.Fatal(http.Serve(sln, mux)) }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.GracefulStop() // lets exports in progress finish before the counts are printed
	}()
	log.Printf("receiving OTLP traces on %s", ln.Addr())
	if err := srv.Serve(ln); err != nil {
		log.Fatal(err)
	}
	c.write(os.Stdout)
}
