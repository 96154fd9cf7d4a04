package helm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// live reads an object from the apiserver into a typed value.
func live[T any](t *testing.T, gvk schema.GroupVersionKind, ns, name string) *T {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		t.Fatalf("%s %s/%s: %v", gvk.Kind, ns, name, err)
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// release objects: what `helm install` must create and `helm uninstall` must remove.
var releaseObjects = []struct {
	gvk        schema.GroupVersionKind
	namespaced bool
	name       string
}{
	{gvkDeployment, true, fullname + "-controller"},
	{gvkDeployment, true, fullname + "-proxy"},
	{gvkService, true, fullname + "-proxy"},
	{gvkService, true, fullname + "-proxy-metrics"},
	{gvkService, true, fullname + "-webhook"},
	{gvkService, true, fullname + "-controller-metrics"},
	{gvkSecret, true, fullname + "-webhook-tls"},
	{gvkSA, true, fullname + "-controller"},
	{gvkSA, true, fullname + "-proxy"},
	{gvkRole, true, fullname + "-leader-election"},
	{gvkRB, true, fullname + "-leader-election"},
	{gvkPDB, true, fullname + "-controller"},
	{gvkPDB, true, fullname + "-proxy"},
	{gvkCR, false, fullname + "-controller"},
	{gvkCR, false, fullname + "-proxy"},
	{gvkCR, false, fullname + "-admin"},
	{gvkCR, false, "slugway-service"},
	{gvkCRB, false, fullname + "-controller"},
	{gvkCRB, false, fullname + "-proxy"},
	{gvkCRB, false, fullname + "-admin"},
	{gvkVWC, false, fullname + "-validating"},
	{gvkMWC, false, fullname + "-mutating"},
}

// canI asks `kubectl auth can-i` as another identity: "yes" exits 0, "no" exits 1.
func canI(t *testing.T, as []string, verb, resource string, scope ...string) bool {
	t.Helper()
	args := append([]string{"auth", "can-i", verb, resource}, as...)
	args = append(args, scope...)
	out, errOut, err := command("kubectl", nil, args...)
	switch strings.TrimSpace(out) {
	case "yes":
		return true
	case "no":
		return false
	}
	t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	return false
}

type perm struct {
	verb, resource string
	scope          []string
	want           bool
}

func checkPerms(t *testing.T, who string, as []string, perms []perm) {
	t.Helper()
	for _, p := range perms {
		if got := canI(t, as, p.verb, p.resource, p.scope...); got != p.want {
			t.Errorf("%s: can-i %s %s %v = %v, want %v", who, p.verb, p.resource, p.scope, got, p.want)
		}
	}
}

// The whole life of a release on the real apiserver: a schema-rejected install, install,
// the objects and their permissions, upgrade with changed values, uninstall.
// No --wait: there is no kubelet, so pods never start.
func TestHelmLifecycle(t *testing.T) {
	ctx := context.Background()
	deleteCRDs(t) // testenv installed them; the chart must create them itself.

	t.Run("invalid values are rejected before anything is installed", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("proxy:\n  replica: 3\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := command("helm", nil, "install", release, chartDir, "-n", namespace, "--create-namespace", "-f", bad)
		if err == nil || !strings.Contains(errOut, "replica") {
			t.Fatalf("helm install accepted a typo in values (err %v): %s", err, errOut)
		}
		if exists(t, gvkDeployment, namespace, fullname+"-controller") || exists(t, gvkVWC, "", fullname+"-validating") {
			t.Fatalf("a rejected install left objects behind")
		}
		if _, _, err := command("helm", nil, "status", release, "-n", namespace); err == nil {
			t.Fatalf("a rejected install created release %s", release)
		}
		// helm installs crds/ before it checks the values, so remove them again: the
		// install below must create them.
		deleteCRDs(t)
	})

	t.Run("install", func(t *testing.T) {
		start := time.Now()
		out := helm(t, "install", release, chartDir, "-n", namespace, "--create-namespace")
		t.Logf("helm install took %s", time.Since(start).Round(time.Millisecond))
		for _, want := range []string{"STATUS: deployed", "kubectl get instances -A", "port-forward svc/" + fullname + "-proxy"} {
			if !strings.Contains(out, want) {
				t.Errorf("helm install output (NOTES) lacks %q:\n%s", want, out)
			}
		}
		for name := range slugwayCRDs {
			eventually(t, 30*time.Second, func() error {
				crd := live[struct {
					Status struct {
						Conditions []metav1.Condition `json:"conditions"`
					} `json:"status"`
				}](t, gvkCRD, "", name)
				if !slices.ContainsFunc(crd.Status.Conditions, func(c metav1.Condition) bool {
					return c.Type == "Established" && c.Status == metav1.ConditionTrue
				}) {
					return fmt.Errorf("CRD %s is not Established: %+v", name, crd.Status.Conditions)
				}
				return nil
			})
		}
		for _, o := range releaseObjects {
			ns := ""
			if o.namespaced {
				ns = namespace
			}
			if !exists(t, o.gvk, ns, o.name) {
				t.Errorf("%s %s/%s was not installed", o.gvk.Kind, ns, o.name)
			}
		}
		secret := live[corev1.Secret](t, gvkSecret, namespace, fullname+"-webhook-tls")
		vwc := live[admissionv1.ValidatingWebhookConfiguration](t, gvkVWC, "", fullname+"-validating")
		for _, w := range vwc.Webhooks {
			verifyServingCert(t, w.ClientConfig.CABundle, secret.Data["tls.crt"], fullname+"-webhook."+namespace+".svc")
		}
	})

	t.Run("least-privilege RBAC", func(t *testing.T) {
		proxy := []string{"--as=system:serviceaccount:" + namespace + ":" + fullname + "-proxy"}
		checkPerms(t, "proxy", proxy, []perm{
			{"get", "instances.slugway.io", []string{"-n", "default"}, true},
			{"list", "instances.slugway.io", []string{"-A"}, true},
			{"watch", "instances.slugway.io", []string{"-A"}, true},
			{"list", "serviceaccounts.slugway.io", nil, true},
			{"watch", "serviceaccounts.slugway.io", nil, true},
			{"create", "instances.slugway.io", []string{"-n", "default"}, false},
			{"delete", "instances.slugway.io", []string{"-n", "default"}, false},
			{"deletecollection", "instances.slugway.io", []string{"-A"}, false},
			{"update", "instances.slugway.io", []string{"-n", "default"}, false},
			{"patch", "instances.slugway.io", []string{"-n", "default", "--subresource=status"}, false},
			{"create", "serviceaccounts.slugway.io", nil, false},
			{"delete", "serviceaccounts.slugway.io", nil, false},
			{"get", "secrets", []string{"-n", namespace}, false},
		})
		controller := []string{"--as=system:serviceaccount:" + namespace + ":" + fullname + "-controller"}
		checkPerms(t, "controller", controller, []perm{
			{"list", "instances.slugway.io", []string{"-A"}, true},
			{"patch", "instances.slugway.io", []string{"-n", "default", "--subresource=status"}, true},
			{"delete", "instances.slugway.io", []string{"-n", "default"}, true}, // --expire-unreachable-after
			{"update", "serviceaccounts.slugway.io", []string{"--subresource=status"}, true},
			{"create", "leases.coordination.k8s.io", []string{"-n", namespace}, true},
			{"create", "leases.coordination.k8s.io", []string{"-n", "default"}, false},
			{"create", "instances.slugway.io", []string{"-n", "default"}, false},
			{"create", "serviceaccounts.slugway.io", nil, false},
			{"delete", "serviceaccounts.slugway.io", nil, false},
			{"get", "secrets", []string{"-n", namespace}, false},
		})
		// A workload bound to slugway-service may claim a slug and manage Instances
		// (the webhook narrows that to its own slug), but not delete slugs or read Secrets.
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "test-workload-slugway"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "slugway-service"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "app", Namespace: "team-a"}},
		}
		if err := env.Client.Create(ctx, crb); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = env.Client.Delete(ctx, crb) }()
		workload := []string{"--as=system:serviceaccount:team-a:app"}
		checkPerms(t, "workload", workload, []perm{
			{"create", "serviceaccounts.slugway.io", nil, true},
			{"create", "instances.slugway.io", []string{"-n", "team-a"}, true},
			{"patch", "instances.slugway.io", []string{"-n", "team-a", "--subresource=status"}, true},
			{"delete", "serviceaccounts.slugway.io", nil, false},
			{"update", "serviceaccounts.slugway.io", nil, false},
			{"get", "secrets", []string{"-n", "team-a"}, false},
		})
		checkPerms(t, "admin group", []string{"--as=alice", "--as-group=slugway:admins"}, []perm{
			{"delete", "serviceaccounts.slugway.io", nil, true},
			{"deletecollection", "instances.slugway.io", []string{"-A"}, true},
			{"get", "secrets", []string{"-n", namespace}, false},
		})
		checkPerms(t, "nobody", []string{"--as=bob"}, []perm{
			{"list", "instances.slugway.io", []string{"-A"}, false},
		})
	})

	t.Run("upgrade with changed values", func(t *testing.T) {
		before := live[admissionv1.ValidatingWebhookConfiguration](t, gvkVWC, "", fullname+"-validating")
		secretBefore := live[corev1.Secret](t, gvkSecret, namespace, fullname+"-webhook-tls")
		out := helm(t, "upgrade", release, chartDir, "-n", namespace,
			"--set", "proxy.service.type=NodePort",
			"--set", "controller.heartbeatRefresh=1m",
			"--set", "adminGroups={system:masters,platform:ops}",
			"--set", "ha.enabled=true")
		if !strings.Contains(out, "REVISION: 2") {
			t.Errorf("helm upgrade output:\n%s", out)
		}
		svc := live[corev1.Service](t, gvkService, namespace, fullname+"-proxy")
		if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].NodePort == 0 {
			t.Errorf("proxy Service after upgrade: type %s ports %+v, want a NodePort", svc.Spec.Type, svc.Spec.Ports)
		}
		d := live[appsv1.Deployment](t, gvkDeployment, namespace, fullname+"-controller")
		args := d.Spec.Template.Spec.Containers[0].Args
		if !slices.Contains(args, "--heartbeat-refresh=1m") || !slices.Contains(args, "--admin-groups=system:masters,platform:ops") {
			t.Errorf("controller args after upgrade %v", args)
		}
		if *d.Spec.Replicas != 2 {
			t.Errorf("controller replicas after ha.enabled upgrade: %d", *d.Spec.Replicas)
		}
		admin := live[rbacv1.ClusterRoleBinding](t, gvkCRB, "", fullname+"-admin")
		if len(admin.Subjects) != 1 || admin.Subjects[0].Name != "platform:ops" {
			t.Errorf("admin binding after upgrade: %+v", admin.Subjects)
		}
		checkPerms(t, "old admin group", []string{"--as=alice", "--as-group=slugway:admins"}, []perm{
			{"delete", "serviceaccounts.slugway.io", nil, false},
		})
		// The webhook's certificate and CA survive an upgrade (the chart reuses its Secret),
		// so running controllers keep serving a certificate the apiserver trusts.
		after := live[admissionv1.ValidatingWebhookConfiguration](t, gvkVWC, "", fullname+"-validating")
		secretAfter := live[corev1.Secret](t, gvkSecret, namespace, fullname+"-webhook-tls")
		if string(before.Webhooks[0].ClientConfig.CABundle) != string(after.Webhooks[0].ClientConfig.CABundle) ||
			string(secretBefore.Data["tls.crt"]) != string(secretAfter.Data["tls.crt"]) {
			t.Errorf("helm upgrade replaced the webhook CA or certificate")
		}
	})

	t.Run("uninstall removes everything but the CRDs", func(t *testing.T) {
		helm(t, "uninstall", release, "-n", namespace)
		for _, o := range releaseObjects {
			ns := ""
			if o.namespaced {
				ns = namespace
			}
			if exists(t, o.gvk, ns, o.name) {
				t.Errorf("%s %s/%s is left after helm uninstall", o.gvk.Kind, ns, o.name)
			}
		}
		for name := range slugwayCRDs {
			if !exists(t, gvkCRD, "", name) {
				t.Errorf("CRD %s was removed: uninstall must keep the CRDs (and so every slug and instance)", name)
			}
		}
		if _, _, err := command("helm", nil, "status", release, "-n", namespace); err == nil {
			t.Errorf("helm still knows release %s after uninstall", release)
		}
	})
}
