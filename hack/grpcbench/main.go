// Command grpcbench is the gRPC row of docs/benchmarks.md: a grpc-go load loop
// against examples/grpc-svc's server, direct and through slugway (h2c, routed
// by host name), in the same run. hack/bench-grpc.sh runs it; by hand:
//
//	grpcbench serve -listen 127.0.0.1:28091            # the instance
//	grpcbench env -origin http://127.0.0.1:28091       # a control plane with slug grpc-bench (h2c)
//	grpcbench load -target 127.0.0.1:28091 -authority grpc-bench.bench.test
//
// load runs -concurrency unary calls in flight over -conns connections for
// -duration after -warmup, and prints one line: target, calls/s, p50, p99 (ms),
// errors.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/examples/grpc-svc/grpcsvc"
	"github.com/slugway/slugway/internal/testenv"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcbench serve|env|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "env":
		err = env(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: use serve, env or load", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcbench:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:28091", "address of the gRPC server")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv, _ := grpcsvc.NewServer("bench")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Stop() }()
	fmt.Println("ready")
	return srv.Serve(ln)
}

// env starts kube-apiserver and etcd, registers slug grpc-bench with one Healthy
// h2c instance at -origin, writes an admin kubeconfig, prints "ready" and runs
// until interrupted.
func env(args []string) error {
	fs := flag.NewFlagSet("env", flag.ExitOnError)
	origin := fs.String("origin", "http://127.0.0.1:28091", "URL of the instance")
	kubeconfig := fs.String("write-kubeconfig", "grpcbench.kubeconfig", "where to write the admin kubeconfig")
	_ = fs.Parse(args)
	e, err := testenv.Start(false)
	if err != nil {
		return err
	}
	defer func() { _ = e.Stop() }()
	ctx := context.Background()
	if err := e.Client.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "grpc-bench"}, Spec: slugwayv1.ServiceAccountSpec{Owner: "bench"}}); err != nil {
		return err
	}
	inst := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Name: "grpc-bench-1", Namespace: "default"},
		Spec: slugwayv1.InstanceSpec{Slug: "grpc-bench", URL: *origin, AppProtocol: slugwayv1.AppProtocolH2C}}
	if err := e.Client.Create(ctx, inst); err != nil {
		return err
	}
	inst.Status.Status = slugwayv1.HealthHealthy
	apimeta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonSlugClaimed, ObservedGeneration: inst.Generation})
	if err := e.Client.Status().Update(ctx, inst); err != nil {
		return err
	}
	user, err := e.AddUser(envtest.User{Name: "bench-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*kubeconfig, kc, 0o600); err != nil {
		return err
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	target := fs.String("target", "127.0.0.1:28091", "address to dial")
	authority := fs.String("authority", "", "the :authority (empty: the target)")
	name := fs.String("name", "", "the row's name (default: the target)")
	conns := fs.Int("conns", 4, "HTTP/2 connections")
	concurrency := fs.Int("concurrency", 64, "calls in flight")
	size := fs.Int("size", 64, "payload bytes each way")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time first")
	_ = fs.Parse(args)
	if *name == "" {
		*name = *target
	}
	clients := make([]testpb.TestServiceClient, *conns)
	for i := range clients {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if *authority != "" {
			opts = append(opts, grpc.WithAuthority(*authority))
		}
		cc, err := grpc.NewClient("passthrough:///"+*target, opts...)
		if err != nil {
			return err
		}
		defer cc.Close()
		clients[i] = testpb.NewTestServiceClient(cc)
	}
	req := &testpb.SimpleRequest{ResponseSize: int32(*size), Payload: &testpb.Payload{Body: make([]byte, *size)}}
	if _, err := clients[0].UnaryCall(context.Background(), req); err != nil {
		return fmt.Errorf("first call to %s: %w", *target, err)
	}
	var measuring atomic.Bool
	var errs atomic.Int64
	lat := make([][]time.Duration, *concurrency)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range *concurrency {
		wg.Go(func() {
			c := clients[w%len(clients)]
			for ctx.Err() == nil {
				start := time.Now()
				_, err := c.UnaryCall(ctx, req)
				d := time.Since(start)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				lat[w] = append(lat[w], d)
			}
		})
	}
	time.Sleep(*warmup)
	measuring.Store(true)
	began := time.Now()
	time.Sleep(*duration)
	measuring.Store(false)
	elapsed := time.Since(began)
	cancel()
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return fmt.Errorf("%s: no call succeeded (%d errors)", *target, errs.Load())
	}
	slices.Sort(all)
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))]) / 1e6 }
	fmt.Printf("%s %.0f %.2f %.2f %d\n", *name, float64(len(all))/elapsed.Seconds(), q(0.5), q(0.99), errs.Load())
	return nil
}
