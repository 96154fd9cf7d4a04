package admission_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
)

// TestSSRFRefusedAtAdmission: URLs that name, or resolve to, link-local and cloud
// metadata addresses are refused when applied, with the address and the flag to change.
func TestSSRFRefusedAtAdmission(t *testing.T) {
	ctx := context.Background()
	claim(t, alice, "ssrf-svc")
	resolver.set("metadata.evil.test", "169.254.169.254")
	for _, tc := range []struct{ url, want string }{
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in the denied range 169.254.0.0/16"},
		{"http://169.254.1.1:8080/", "169.254.0.0/16"},
		{"http://[fd00:ec2::254]/", "fd00:ec2::254/128"},
		{"http://[::ffff:169.254.169.254]/", "169.254.0.0/16"},
		{"http://metadata.evil.test/", `host "metadata.evil.test" resolves to 169.254.169.254`},
	} {
		denied(t, "alice registers "+tc.url, alice.Create(ctx, instance("team-a", "ssrf", "ssrf-svc", tc.url)),
			fmt.Sprintf("spec.url %q is not allowed", tc.url), tc.want, "--deny-cidrs")
	}
	inst := instance("team-a", "ssrf-ok", "ssrf-svc", freshURL())
	mustCreate(t, alice, inst)
	denied(t, "alice switches her URL to the metadata server",
		updateAs(alice, inst, func(i *slugwayv1.Instance) { i.Spec.URL = "http://metadata.evil.test:80/" }), "169.254.169.254", "--deny-cidrs")
}

// TestSSRFRefusedAtDialAfterRebinding: a name that resolved to an allowed address at
// admission and later resolves to the metadata address is refused by the controller's
// probes at dial time, for HTTP and TCP checks alike, and the instance turns Unreachable
// with the reason in its Ready condition.
func TestSSRFRefusedAtDialAfterRebinding(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // every probe dials anew, as after an idle timeout
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	resolver.set("rebind.test", "127.0.0.1")
	claim(t, alice, "rebind-svc")
	hc := slugwayv1.HealthCheck{
		Interval:           &metav1.Duration{Duration: time.Second},
		Timeout:            &metav1.Duration{Duration: 200 * time.Millisecond},
		DegradedAfter:      &metav1.Duration{Duration: 200 * time.Millisecond},
		UnhealthyThreshold: 1,
	}
	viaHTTP := instance("team-a", "rebind-http", "rebind-svc", "http://rebind.test:"+port+"/")
	viaHTTP.Spec.HealthCheck = hc
	viaTCP := instance("team-a", "rebind-tcp", "rebind-svc", "http://rebind.test:"+port+"/tcp")
	viaTCP.Spec.HealthCheck = hc
	viaTCP.Spec.HealthCheck.Type = slugwayv1.HealthCheckTCP
	for _, i := range []*slugwayv1.Instance{viaHTTP, viaTCP} {
		mustCreate(t, alice, i)
	}
	waitStatus := func(i *slugwayv1.Instance, want slugwayv1.Health, msg string) {
		t.Helper()
		testenv.Eventually(t, 15*time.Second, func(ctx context.Context) error {
			var got slugwayv1.Instance
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(i), &got); err != nil {
				return err
			}
			var ready string
			for _, c := range got.Status.Conditions {
				if c.Type == slugwayv1.ConditionReady {
					ready = c.Message
				}
			}
			if got.Status.Status != want || !strings.Contains(ready, msg) {
				return fmt.Errorf("%s: status %q, Ready message %q; want %q with %q", i.Name, got.Status.Status, ready, want, msg)
			}
			return nil
		})
	}
	waitStatus(viaHTTP, slugwayv1.HealthHealthy, "")
	waitStatus(viaTCP, slugwayv1.HealthHealthy, "")
	resolver.set("rebind.test", "169.254.169.254")
	const refused = `host "rebind.test" resolves to 169.254.169.254, which is in the denied range 169.254.0.0/16`
	waitStatus(viaHTTP, slugwayv1.HealthUnreachable, refused)
	waitStatus(viaTCP, slugwayv1.HealthUnreachable, refused)
	_ = ctx
}
