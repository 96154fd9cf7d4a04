package sdk_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/slugway/slugway/internal/testenv"
)

// env is a real kube-apiserver and etcd with slugway's CRDs and admission webhooks,
// and the real controller running in-process: what a service meets in a cluster.
var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Suite{Webhooks: true, Controller: true, Setup: func(ctx context.Context, env *testenv.Env) error {
		return env.GrantSlugwayAccess(ctx)
	}})
}

// user returns credentials of another identity (a client certificate).
func user(t *testing.T, name string) *rest.Config {
	t.Helper()
	cfg, err := env.User(name)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve starts an HTTP server that answers 200 to everything, as a healthy service would.
func serve(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// makePod creates a Pod object. No kubelet runs it; it exists to own Instances.
func makePod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: new(false),
			Containers:                   []corev1.Container{{Name: "svc", Image: "skeleton-svc:dev"}},
		},
	}
	if err := env.Client.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pod) })
	return pod
}

// recorded is one request the SDK sent.
type recorded struct {
	Method, Path, ContentType, Body string
}

// recorder wraps a rest.Config's transport: it records every request and can make
// the next N fail as if the connection broke.
type recorder struct {
	mu       sync.Mutex
	reqs     []recorded
	failNext int
	failed   int
}

func (rec *recorder) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			r := recorded{Method: req.Method, Path: req.URL.Path, ContentType: req.Header.Get("Content-Type")}
			if req.GetBody != nil {
				if b, err := req.GetBody(); err == nil {
					buf := make([]byte, 64<<10)
					n, _ := readFull(b, buf)
					r.Body = string(buf[:n])
				}
			}
			rec.mu.Lock()
			rec.reqs = append(rec.reqs, r)
			fail := rec.failNext > 0
			if fail {
				rec.failNext--
				rec.failed++
			}
			rec.mu.Unlock()
			if fail {
				return nil, fmt.Errorf("injected failure: connection reset by peer")
			}
			return rt.RoundTrip(req)
		})
	}
	return cfg
}

func (rec *recorder) since(i int) []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs[i:]...)
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

func (rec *recorder) fail(n int) {
	rec.mu.Lock()
	rec.failNext = n
	rec.mu.Unlock()
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func readFull(r interface{ Read([]byte) (int, error) }, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
