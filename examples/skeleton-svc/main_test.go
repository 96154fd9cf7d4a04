package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/sdk"
)

// podIdentity is the username of deploy.yaml's pod: its ServiceAccount.
const podIdentity = "system:serviceaccount:default:skeleton-svc"

// env is a real control plane with slugway's webhooks and controller.
var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Suite{Webhooks: true, Controller: true, Setup: func(ctx context.Context, _ *testenv.Env) error {
		return applyRBAC(ctx)
	}})
}

// applyRBAC installs exactly the RBAC a deployed skeleton-svc has: the slugway-service
// ClusterRole and deploy.yaml's binding of the pod's ServiceAccount to it. No test here
// grants more, so the tests prove the manifest's permissions suffice.
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

func TestHello(t *testing.T) {
	srv := httptest.NewServer(handler())
	defer srv.Close()
	cases := []struct {
		method, path string
		code         int
		ctype, body  string
	}{
		{"GET", "/skeleton-svc/hello", 200, "application/json", "{\"hello\":\"world\"}\n"},
		{"GET", "/healthz", 200, "", "ok\n"},
		{"POST", "/skeleton-svc/hello", 405, "", ""},
		{"GET", "/other", 404, "", ""},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.code)
		}
		if c.ctype != "" && resp.Header.Get("Content-Type") != c.ctype {
			t.Errorf("%s %s: content-type %q", c.method, c.path, resp.Header.Get("Content-Type"))
		}
		if c.body != "" && string(body) != c.body {
			t.Errorf("%s %s: body %q, want %q", c.method, c.path, body, c.body)
		}
	}
}

// The service, run as deploy.yaml's pod identity with only its RBAC, claims skeleton-svc, turns
// Healthy under the real controller's probes, and deregisters when told to stop.
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
	t.Setenv(sdk.EnvPodName, "skeleton-svc-6c9f-abcde")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, ln, sdk.Options{Slug: slug, DisplayName: displayName, Config: cfg}, logr.Discard())
	}()

	key := types.NamespacedName{Namespace: "default", Name: "skeleton-svc-skeleton-svc-6c9f-abcde"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var inst slugwayv1.Instance
		err := env.Client.Get(ctx, key, &inst)
		if err == nil && inst.Status.Status == slugwayv1.HealthHealthy && inst.Spec.URL == self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance not Healthy within 20s: %v %+v", err, inst.Status)
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	var sa slugwayv1.ServiceAccount
	if err := env.Client.Get(ctx, types.NamespacedName{Name: slug}, &sa); err != nil {
		t.Fatal(err)
	}
	if sa.Spec.Owner != podIdentity || sa.Spec.DisplayName != "Skeleton Svc" {
		t.Fatalf("slug spec %+v", sa.Spec)
	}
	resp, err := http.Get(self + "/skeleton-svc/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	stop() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	var inst slugwayv1.Instance
	if err := env.Client.Get(ctx, key, &inst); !apierrors.IsNotFound(err) {
		t.Fatalf("instance after shutdown: %v, want NotFound", err)
	}
	if _, err := http.Get(self + "/healthz"); err == nil {
		t.Fatal("server still answering after shutdown")
	}
}

// A slug owned by someone else stops the service with the owner's name.
func TestRunFailsWhenSlugIsTaken(t *testing.T) {
	ctx := context.Background()
	taken := &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "taken-svc"}, Spec: slugwayv1.ServiceAccountSpec{Owner: "alice"}}
	if err := env.Client.Create(ctx, taken); err != nil {
		t.Fatal(err)
	}
	cfg, err := env.User(podIdentity)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = run(runCtx, ln, sdk.Options{Slug: "taken-svc", URL: "http://" + ln.Addr().String(), Namespace: "default", Config: cfg}, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), `slug "taken-svc" is owned by "alice"`) {
		t.Fatalf("run: %v, want the slug's owner named", err)
	}
	if runCtx.Err() != nil {
		t.Fatal("run retried a permanent refusal until its context ended")
	}
}
