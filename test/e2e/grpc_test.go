package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/slugway/slugway/internal/proc"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/test/harness"
)

// The walkthrough's gRPC part, as make run does it: the grpc-svc binary
// registers as system:serviceaccount:default:grpc-svc, the proxy binary routes
// by host name (--host-domains localhost), and a stock grpc-go client dials the
// proxy with grpc-svc.localhost as its authority, as the printed grpcurl command does.
func TestGRPCExampleByHost(t *testing.T) {
	const identity = "system:serviceaccount:default:grpc-svc"
	bin := filepath.Join(c.Dir, "grpc-svc")
	build := exec.Command("go", "build", "-o", bin, "./examples/grpc-svc")
	build.Dir, build.Env = testenv.Root(), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/grpc-svc: %v\n%s", err, out)
	}
	kubeconfig := serviceAccountKubeconfig(t, "grpc-svc")
	serviceAccountKubeconfig(t, "impostor")
	addr := harness.FreeAddr()
	c.ReleaseAtCleanup(t, "grpc-svc") // once grpc-svc is stopped, so that it cannot register again
	p, err := proc.Start("grpc-svc", filepath.Join(c.Dir, "logs"), []string{
		"KUBECONFIG=" + kubeconfig, "SELF_URL=http://" + addr, "LISTEN_ADDR=" + addr, "POD_NAMESPACE=default",
	}, nil, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(10 * time.Second) })

	cc, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(c.ProxyURL, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("grpc-svc.localhost"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	harness.Eventually(t, 60*time.Second, func() error {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("grpc-svc exited: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("health %v", resp.GetStatus())
		}
		return err
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tc := testpb.NewTestServiceClient(cc)
	if resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 5}); err != nil || len(resp.GetPayload().GetBody()) != 5 {
		t.Errorf("UnaryCall: %v, %v", resp, err)
	}
	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); err != nil || len(resp.GetPayload().GetBody()) != 1 || resp.GetPayload().GetBody()[0] != byte(i) {
			t.Fatalf("bidi round %d: %v, %v", i, resp, err)
		}
	}
	_ = stream.CloseSend()
	_, err = tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied), Message: "no"}})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "no" {
		t.Errorf("requested error: %v, want PermissionDenied: no", err)
	}

	// The walkthrough's curl by host name.
	port := c.ProxyURL[strings.LastIndexByte(c.ProxyURL, ':')+1:]
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+port+"/skeleton-svc/hello", nil)
	req.Host = "skeleton-svc.localhost:" + port // what curl http://skeleton-svc.localhost:<port>/... sends
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "world") {
		t.Errorf("skeleton-svc by host name: %d %s", resp.StatusCode, body)
	}

	// kubectl get slugs shows the service's own identity as the owner, and the
	// walkthrough's impostor is refused by the webhook, naming that owner.
	sa := harness.FindRow(c.KubectlTable(t, "admin", "slugs"), "NAME", "grpc-svc")
	if sa == nil || sa["OWNER"] != identity {
		t.Errorf("kubectl get slugs: grpc-svc row %v, want OWNER %s", sa, identity)
	}
	hijack := `{"apiVersion":"slugway.io/v1alpha1","kind":"Instance","metadata":{"name":"hijack-grpc","namespace":"default"},"spec":{"slug":"grpc-svc","url":"http://127.0.0.1:9999"}}`
	out, err := c.KubectlIn("admin", hijack, "--as=system:serviceaccount:default:impostor", "create", "-f", "-")
	if err == nil || !strings.Contains(out, "denied") || !strings.Contains(out, identity) {
		t.Errorf("the impostor's instance: %v\n%s\nwant a denial naming the owner %s", err, out, identity)
	}
}

// serviceAccountKubeconfig writes a kubeconfig whose client certificate is
// system:serviceaccount:default:<name>, bound to the slugway-service ClusterRole
// as deploy.yaml binds the pod's ServiceAccount, and returns its path.
func serviceAccountKubeconfig(t *testing.T, name string) string {
	t.Helper()
	user := "system:serviceaccount:default:" + name
	u, err := c.Env.AddUser(envtest.User{Name: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:default"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Dir, "kubeconfig-sa-"+name)
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-slugway-service-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "slugway-service"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: "default"}},
	}
	if err := c.Env.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Env.Client.Delete(context.Background(), b) })
	return path
}
