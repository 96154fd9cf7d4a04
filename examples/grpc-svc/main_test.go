package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/sdk"
)

// podIdentity is the username of deploy.yaml's pod: its ServiceAccount.
const podIdentity = "system:serviceaccount:default:grpc-svc"

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Suite{Webhooks: true, Controller: true, Setup: func(ctx context.Context, _ *testenv.Env) error {
		return applyRBAC(ctx)
	}})
}

// applyRBAC installs exactly the RBAC a deployed grpc-svc has: the slugway-service
// ClusterRole and deploy.yaml's binding of the pod's ServiceAccount to it.
func applyRBAC(ctx context.Context) error {
	for _, file := range []string{filepath.Join(env.Root, "config", "rbac", "service_role.yaml"), "deploy.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var obj unstructured.Unstructured
			if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if k := obj.GetKind(); k != "ClusterRole" && k != "ClusterRoleBinding" {
				continue
			}
			if err := env.Client.Create(ctx, &obj); err != nil {
				return fmt.Errorf("%s: %s %s: %w", file, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	return nil
}

// The service, run as deploy.yaml's pod identity, claims grpc-svc with an h2c
// Instance that turns Healthy under the real controller's TCP probes, answers
// its stock services, and deregisters when told to stop.
func TestRunRegistersAndDeregisters(t *testing.T) {
	ctx := context.Background()
	cfg, err := env.User(podIdentity)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := "http://" + ln.Addr().String()
	t.Setenv(sdk.EnvSelfURL, self)
	t.Setenv(sdk.EnvPodNamespace, "default")
	t.Setenv(sdk.EnvPodName, "grpc-svc-7d4b-fghij")
	opts := registration()
	opts.Config = cfg
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, ln, opts, logr.Discard()) }()

	key := types.NamespacedName{Namespace: "default", Name: "grpc-svc-grpc-svc-7d4b-fghij"}
	deadline := time.Now().Add(30 * time.Second)
	var inst slugwayv1.Instance
	for {
		err := env.Client.Get(ctx, key, &inst)
		if err == nil && inst.Status.Status == slugwayv1.HealthHealthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance not Healthy within 30s: %v %+v", err, inst.Status)
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if inst.Spec.URL != self || inst.Spec.AppProtocol != slugwayv1.AppProtocolH2C || inst.Spec.HealthCheck.Type != slugwayv1.HealthCheckTCP {
		t.Errorf("instance spec %+v, want %s, h2c and a TCP check", inst.Spec, self)
	}
	var sa slugwayv1.ServiceAccount
	if err := env.Client.Get(ctx, types.NamespacedName{Name: slug}, &sa); err != nil {
		t.Fatal(err)
	}
	if sa.Spec.Owner != podIdentity || sa.Spec.DisplayName != displayName {
		t.Errorf("slug spec %+v, want owner %s", sa.Spec, podIdentity)
	}

	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if resp, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v, %v", resp.GetStatus(), err)
	}
	if resp, err := testpb.NewTestServiceClient(cc).UnaryCall(cctx, &testpb.SimpleRequest{ResponseSize: 3}); err != nil || len(resp.GetPayload().GetBody()) != 3 {
		t.Errorf("UnaryCall: %v, %v", resp, err)
	}

	stop() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if err := env.Client.Get(ctx, key, &inst); !apierrors.IsNotFound(err) {
		t.Fatalf("instance after shutdown: %v, want NotFound", err)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("server still accepting after shutdown")
	}
}
