package helm_test

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const kustomizeNamespace = "slugway-system"

func kustomizeDir() string { return filepath.Join(env.Root, "config", "default") }

// config/default renders what a kubebuilder project's does, hardened like the chart.
func TestKustomizeRenders(t *testing.T) {
	m := parse(t, must(t, "kubectl", nil, "kustomize", kustomizeDir()))
	for _, key := range []string{
		"Namespace/" + kustomizeNamespace,
		"CustomResourceDefinition/instances.slugway.io", "CustomResourceDefinition/serviceaccounts.slugway.io",
		"ClusterRole/slugway-controller", "ClusterRole/slugway-proxy", "ClusterRole/slugway-service", "ClusterRole/slugway-admin",
		"Role/slugway-leader-election", "Service/slugway-webhook-service", "Service/slugway-proxy",
	} {
		if _, ok := m[key]; !ok {
			t.Errorf("%s not rendered; got %v", key, m.keys())
		}
	}
	for _, name := range []string{"slugway-controller", "slugway-proxy"} {
		d := get[appsv1.Deployment](t, m, "Deployment/"+name)
		if d.Namespace != kustomizeNamespace {
			t.Errorf("%s in namespace %q", name, d.Namespace)
		}
		checkHardened(t, d)
	}
	ctrl := get[appsv1.Deployment](t, m, "Deployment/slugway-controller")
	if c := ctrl.Spec.Template.Spec.Containers[0]; c.Args[0] != "controller" || !slices.Contains(c.Args, "--leader-elect=true") || !hasPodNamespaceEnv(c) {
		t.Errorf("controller container %+v", c)
	}
	proxyRole := get[rbacv1.ClusterRole](t, m, "ClusterRole/slugway-proxy")
	for _, r := range proxyRole.Rules {
		if !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("proxy role grants %v", r.Verbs)
		}
	}
	for _, name := range []string{"slugway-controller", "slugway-proxy"} {
		b := get[rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding/"+name)
		if b.Subjects[0].Namespace != kustomizeNamespace || b.Subjects[0].Name != name {
			t.Errorf("%s binds %+v", name, b.Subjects)
		}
	}
	vwc := get[admissionv1.ValidatingWebhookConfiguration](t, m, "ValidatingWebhookConfiguration/slugway-validating-webhook-configuration")
	for _, w := range vwc.Webhooks {
		if s := w.ClientConfig.Service; s.Name != "slugway-webhook-service" || s.Namespace != kustomizeNamespace || *w.FailurePolicy != admissionv1.Fail {
			t.Errorf("%s: service %+v failurePolicy %v", w.Name, s, *w.FailurePolicy)
		}
	}
	get[admissionv1.MutatingWebhookConfiguration](t, m, "MutatingWebhookConfiguration/slugway-mutating-webhook-configuration")
}

// config/ shuts both Deployments down as the chart's defaults do: the proxy with the same
// --shutdown-delay (without one a rolling update lost 21 of 310k requests) and
// --drain-timeout, the controller with the same --shutdown-delay (without one the
// apiserver refused writes while a deleted controller pod was still the webhook
// Service's endpoint: "connection refused"), each with a grace period longer than its
// delays and the same rolling-update strategy.
func TestKustomizeShutdownMatchesChart(t *testing.T) {
	kustomized := parse(t, must(t, "kubectl", nil, "kustomize", kustomizeDir()))
	charted := parse(t, helmTemplate(t, release, namespace))
	for _, c := range []struct {
		kust, chart string
		flags       []string
	}{
		{"Deployment/slugway-proxy", "Deployment/" + fullname + "-proxy", []string{"--shutdown-delay=", "--drain-timeout="}},
		{"Deployment/slugway-controller", "Deployment/" + fullname + "-controller", []string{"--shutdown-delay="}},
	} {
		kust, chart := get[appsv1.Deployment](t, kustomized, c.kust), get[appsv1.Deployment](t, charted, c.chart)
		shutdown := func(d *appsv1.Deployment) map[string]time.Duration {
			t.Helper()
			got, sum := map[string]time.Duration{}, time.Duration(0)
			for _, a := range d.Spec.Template.Spec.Containers[0].Args {
				for _, flag := range c.flags {
					if s, ok := strings.CutPrefix(a, flag); ok {
						v, err := time.ParseDuration(s)
						if err != nil {
							t.Fatalf("%s: %s: %v", d.Name, a, err)
						}
						got[flag], sum = v, sum+v
					}
				}
			}
			for _, flag := range c.flags {
				if got[flag] <= 0 {
					t.Errorf("%s: args %v: want %s with a positive duration", d.Name, d.Spec.Template.Spec.Containers[0].Args, flag)
				}
			}
			grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
			if grace == nil || time.Duration(*grace)*time.Second <= sum {
				t.Errorf("%s: terminationGracePeriodSeconds %s, want more than %v together (%s)", d.Name, seconds(grace), c.flags, sum)
			}
			return got
		}
		if k, ch := shutdown(kust), shutdown(chart); !maps.Equal(k, ch) {
			t.Errorf("%s: %v; the chart: %v", c.kust, k, ch)
		}
		if k, ch := kust.Spec.Template.Spec.TerminationGracePeriodSeconds, chart.Spec.Template.Spec.TerminationGracePeriodSeconds; k == nil || ch == nil || *k != *ch {
			t.Errorf("%s: terminationGracePeriodSeconds %s, the chart %s", c.kust, seconds(k), seconds(ch))
		}
		if !equalJSON(t, kust.Spec.Strategy, chart.Spec.Strategy) {
			t.Errorf("%s: strategy %+v, the chart %+v", c.kust, kust.Spec.Strategy, chart.Spec.Strategy)
		}
	}
}

// seconds prints a terminationGracePeriodSeconds ("unset" for none: the default, 30).
func seconds(p *int64) string {
	if p == nil {
		return "unset"
	}
	return strconv.FormatInt(*p, 10)
}

// `kubectl apply -k config/default --dry-run=server` is accepted by the real apiserver
// (the target namespace must exist for a server-side dry run of namespaced objects).
func TestKustomizeServerDryRun(t *testing.T) {
	ensureNamespace(t, kustomizeNamespace)
	out := must(t, "kubectl", nil, "apply", "-k", kustomizeDir(), "--dry-run=server")
	for _, want := range []string{
		"deployment.apps/slugway-controller", "deployment.apps/slugway-proxy", "service/slugway-webhook-service",
		"validatingwebhookconfiguration.admissionregistration.k8s.io/slugway-validating-webhook-configuration",
		"clusterrole.rbac.authorization.k8s.io/slugway-controller", "(server dry run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}
}

// A real `kubectl apply -k config/default`, then hack/webhook-certs.sh gives the webhook
// a certificate: the Secret the controller mounts, and a caBundle that verifies it.
func TestKustomizeApplyAndWebhookCerts(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed; hack/webhook-certs.sh needs it")
	}
	ensureNamespace(t, kustomizeNamespace)
	rendered := must(t, "kubectl", nil, "kustomize", kustomizeDir())
	t.Cleanup(func() { deleteAllButNamespaceAndCRDs(t, rendered) })
	must(t, "kubectl", nil, "apply", "-k", kustomizeDir())

	script := filepath.Join(env.Root, "hack", "webhook-certs.sh")
	runScript := func(args ...string) {
		t.Helper()
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "KUBECTL="+filepath.Join(assets, "kubectl"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	runScript(kustomizeNamespace)
	secret := live[corev1.Secret](t, gvkSecret, kustomizeNamespace, "slugway-webhook-server-cert")
	dns := "slugway-webhook-service." + kustomizeNamespace + ".svc"
	check := func() {
		t.Helper()
		vwc := live[admissionv1.ValidatingWebhookConfiguration](t, gvkVWC, "", "slugway-validating-webhook-configuration")
		mwc := live[admissionv1.MutatingWebhookConfiguration](t, gvkMWC, "", "slugway-mutating-webhook-configuration")
		for _, w := range vwc.Webhooks {
			verifyServingCert(t, w.ClientConfig.CABundle, secret.Data["tls.crt"], dns)
		}
		for _, w := range mwc.Webhooks {
			verifyServingCert(t, w.ClientConfig.CABundle, secret.Data["tls.crt"], dns)
		}
	}
	check()
	// Re-applying the manifests keeps the caBundle (it is not in them), and re-running
	// the script keeps the certificate.
	must(t, "kubectl", nil, "apply", "-k", kustomizeDir())
	runScript(kustomizeNamespace)
	again := live[corev1.Secret](t, gvkSecret, kustomizeNamespace, "slugway-webhook-server-cert")
	if string(again.Data["tls.crt"]) != string(secret.Data["tls.crt"]) {
		t.Errorf("re-running hack/webhook-certs.sh replaced the certificate without --renew")
	}
	check()
	// --renew replaces it, and the caBundle follows.
	runScript("--renew", kustomizeNamespace)
	secret = live[corev1.Secret](t, gvkSecret, kustomizeNamespace, "slugway-webhook-server-cert")
	if string(again.Data["tls.crt"]) == string(secret.Data["tls.crt"]) {
		t.Errorf("--renew kept the old certificate")
	}
	check()

	checkPerms(t, "kustomize proxy", []string{"--as=system:serviceaccount:" + kustomizeNamespace + ":slugway-proxy"}, []perm{
		{"list", "instances.slugway.io", []string{"-A"}, true},
		{"create", "instances.slugway.io", []string{"-n", "default"}, false},
		{"delete", "instances.slugway.io", []string{"-n", "default"}, false},
	})
}

// deleteAllButNamespaceAndCRDs removes what a kustomize apply created, except the
// Namespace (without kube-controller-manager it would stay Terminating) and the CRDs.
func deleteAllButNamespaceAndCRDs(t *testing.T, rendered string) {
	var keep []string
	for key, u := range parse(t, rendered) {
		if u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition" {
			continue
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		keep = append(keep, "---\n# "+key+"\n"+string(b))
	}
	must(t, "kubectl", []byte(strings.Join(keep, "")), "delete", "--ignore-not-found", "--wait=false", "-f", "-")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: kustomizeNamespace, Name: "slugway-webhook-server-cert"}}
	if err := env.Client.Delete(context.Background(), secret); client.IgnoreNotFound(err) != nil {
		t.Error(err)
	}
}

// The optional cert-manager component issues the certificate the controller mounts and
// has the CA injected into both webhook configurations.
func TestKustomizeCertManagerComponent(t *testing.T) {
	m := parse(t, must(t, "kubectl", nil, "kustomize", "testdata/kustomize-certmanager"))
	cert, ok := m["Certificate/slugway-webhook"]
	if !ok {
		t.Fatalf("no Certificate rendered: %v", m.keys())
	}
	spec := cert.Object["spec"].(map[string]any)
	ctrl := get[appsv1.Deployment](t, m, "Deployment/slugway-controller")
	if vol := ctrl.Spec.Template.Spec.Volumes[0].Secret.SecretName; spec["secretName"] != vol {
		t.Errorf("Certificate writes %v, the controller mounts %s", spec["secretName"], vol)
	}
	if cert.GetNamespace() != kustomizeNamespace || !slices.Contains(spec["dnsNames"].([]any), any("slugway-webhook-service."+kustomizeNamespace+".svc")) {
		t.Errorf("Certificate %s/%s for %v, want the webhook Service in %s", cert.GetNamespace(), cert.GetName(), spec["dnsNames"], kustomizeNamespace)
	}
	for _, key := range []string{"ValidatingWebhookConfiguration/slugway-validating-webhook-configuration", "MutatingWebhookConfiguration/slugway-mutating-webhook-configuration"} {
		if got := m[key].GetAnnotations()["cert-manager.io/inject-ca-from"]; got != kustomizeNamespace+"/slugway-webhook" {
			t.Errorf("%s: inject-ca-from %q", key, got)
		}
	}
}
