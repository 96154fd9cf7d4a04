package helm_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

const (
	release   = "sw"
	namespace = "slugway-helm"
	fullname  = "sw-slugway"
)

// The chart ships copies of generated files; they must be byte-identical to the
// originals (`make manifests` copies them; hack/verify-generated.sh also checks).
func TestChartCopiesOfGeneratedFilesAreCurrent(t *testing.T) {
	pairs := map[string]string{
		"config/rbac/role.yaml":         "charts/slugway/files/controller-role.yaml",
		"config/rbac/service_role.yaml": "charts/slugway/files/service-role.yaml",
		"config/webhook/manifests.yaml": "charts/slugway/files/webhooks.yaml",
	}
	crds, err := filepath.Glob(filepath.Join(env.Root, "config/crd/bases/*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	for _, c := range crds {
		pairs["config/crd/bases/"+filepath.Base(c)] = "charts/slugway/crds/" + filepath.Base(c)
	}
	chartCRDs, _ := filepath.Glob(filepath.Join(chartDir, "crds/*.yaml"))
	if len(chartCRDs) != len(crds) {
		t.Errorf("charts/slugway/crds has %d files, config/crd/bases %d: run `make manifests`", len(chartCRDs), len(crds))
	}
	for src, dst := range pairs {
		a, err := os.ReadFile(filepath.Join(env.Root, src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(env.Root, dst))
		if err != nil {
			t.Fatalf("%v: run `make manifests`", err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run `make manifests`", dst, src)
		}
	}
}

func TestHelmLintIsClean(t *testing.T) {
	for _, values := range []string{"", "testdata/ha-values.yaml"} {
		args := []string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}
		if values != "" {
			args = append(args, "-f", values)
		}
		out := helm(t, args...)
		if !strings.Contains(out, "0 chart(s) failed") || strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
			t.Errorf("helm lint %s is not clean:\n%s", values, out)
		}
	}
}

func TestTemplateDefaults(t *testing.T) {
	m := parse(t, helmTemplate(t, release, namespace))

	ctrl := get[appsv1.Deployment](t, m, "Deployment/"+fullname+"-controller")
	proxy := get[appsv1.Deployment](t, m, "Deployment/"+fullname+"-proxy")
	for _, d := range []*appsv1.Deployment{ctrl, proxy} {
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("%s: replicas %v, want 1 by default", d.Name, d.Spec.Replicas)
		}
		checkHardened(t, d)
	}
	c := ctrl.Spec.Template.Spec.Containers[0]
	for _, arg := range []string{"controller", "--leader-elect=true", "--admin-groups=system:masters,slugway:admins",
		"--webhook-port=9443", "--metrics-bind-address=:8081", "--health-probe-bind-address=:8082",
		"--reserved-slugs=healthz,readyz,metrics,slugway", "--heartbeat-refresh=30s", "--max-heartbeat-writes=50"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("controller args %v lack %q", c.Args, arg)
		}
	}
	if c.Args[0] != "controller" || proxy.Spec.Template.Spec.Containers[0].Args[0] != "proxy" {
		t.Errorf("the subcommand must come first: controller %v, proxy %v", c.Args, proxy.Spec.Template.Spec.Containers[0].Args)
	}
	if !hasPodNamespaceEnv(c) {
		t.Errorf("controller has no POD_NAMESPACE from the downward API (the leader-election namespace): %+v", c.Env)
	}
	if ctrl.Spec.Template.Spec.ServiceAccountName != fullname+"-controller" || proxy.Spec.Template.Spec.ServiceAccountName != fullname+"-proxy" {
		t.Errorf("service accounts: controller %q, proxy %q", ctrl.Spec.Template.Spec.ServiceAccountName, proxy.Spec.Template.Spec.ServiceAccountName)
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("controller probes: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	pc := proxy.Spec.Template.Spec.Containers[0]
	if !slices.Contains(pc.Args, "--listen=:8080") || !slices.Contains(pc.Args, "--admin-listen=:9080") {
		t.Errorf("proxy args %v", pc.Args)
	}
	if pc.ReadinessProbe.HTTPGet.Port.String() != "admin" || !hasPort(pc, "admin", 9080) || !hasPort(pc, "http", 8080) {
		t.Errorf("proxy ports/probes: %+v %+v", pc.Ports, pc.ReadinessProbe)
	}

	svc := get[corev1.Service](t, m, "Service/"+fullname+"-proxy")
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("proxy Service: type %s ports %+v; want ClusterIP with only the traffic port", svc.Spec.Type, svc.Spec.Ports)
	}
	metrics := get[corev1.Service](t, m, "Service/"+fullname+"-proxy-metrics")
	if metrics.Spec.Type != corev1.ServiceTypeClusterIP || metrics.Spec.Ports[0].TargetPort.String() != "admin" {
		t.Errorf("proxy metrics Service: %+v", metrics.Spec)
	}
	get[corev1.Service](t, m, "Service/"+fullname+"-controller-metrics")

	cpdb := get[policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget/"+fullname+"-controller")
	if cpdb.Spec.MaxUnavailable == nil || cpdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("controller PDB with 1 replica must allow a drain (maxUnavailable 1): %+v", cpdb.Spec)
	}
	get[policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget/"+fullname+"-proxy")
	if hpas := m.kinds("HorizontalPodAutoscaler"); len(hpas) != 0 {
		t.Errorf("HPA rendered by default: %v", hpas)
	}
	if sms := m.kinds("ServiceMonitor"); len(sms) != 0 {
		t.Errorf("ServiceMonitor rendered without the Prometheus operator API: %v", sms)
	}

	checkWebhooks(t, m, namespace)
	checkRBAC(t, m)
}

// checkWebhooks: the three generated webhooks point at the chart's Service, fail closed,
// and trust a CA that signed the serving certificate in the Secret the controller mounts.
func checkWebhooks(t *testing.T, m manifests, ns string) {
	t.Helper()
	secret := get[corev1.Secret](t, m, "Secret/"+fullname+"-webhook-tls")
	ctrl := get[appsv1.Deployment](t, m, "Deployment/"+fullname+"-controller")
	if v := ctrl.Spec.Template.Spec.Volumes; len(v) != 1 || v[0].Secret == nil || v[0].Secret.SecretName != secret.Name {
		t.Errorf("controller does not mount the webhook Secret %s: %+v", secret.Name, v)
	}
	svc := get[corev1.Service](t, m, "Service/"+fullname+"-webhook")
	if svc.Spec.Ports[0].TargetPort.String() != "webhook" || svc.Spec.Selector["app.kubernetes.io/component"] != "controller" {
		t.Errorf("webhook Service: %+v", svc.Spec)
	}
	vwc := get[admissionv1.ValidatingWebhookConfiguration](t, m, "ValidatingWebhookConfiguration/"+fullname+"-validating")
	mwc := get[admissionv1.MutatingWebhookConfiguration](t, m, "MutatingWebhookConfiguration/"+fullname+"-mutating")
	type hook struct {
		name   string
		cc     admissionv1.WebhookClientConfig
		policy *admissionv1.FailurePolicyType
	}
	var hooks []hook
	for _, w := range vwc.Webhooks {
		hooks = append(hooks, hook{w.Name, w.ClientConfig, w.FailurePolicy})
	}
	for _, w := range mwc.Webhooks {
		hooks = append(hooks, hook{w.Name, w.ClientConfig, w.FailurePolicy})
	}
	var names []string
	for _, h := range hooks {
		names = append(names, h.name)
		if h.policy == nil || *h.policy != admissionv1.Fail {
			t.Errorf("%s: failurePolicy %v, want Fail", h.name, h.policy)
		}
		s := h.cc.Service
		if s == nil || s.Name != svc.Name || s.Namespace != ns || s.Path == nil || !strings.HasPrefix(*s.Path, "/") {
			t.Errorf("%s: clientConfig.service %+v, want %s/%s with the generated path", h.name, s, ns, svc.Name)
		}
		verifyServingCert(t, h.cc.CABundle, secret.Data["tls.crt"], svc.Name+"."+ns+".svc")
	}
	slices.Sort(names)
	if want := []string{"minstance.slugway.io", "mserviceaccount.slugway.io", "vinstance.slugway.io", "vserviceaccount.slugway.io"}; !slices.Equal(names, want) {
		t.Errorf("webhooks %v, want %v", names, want)
	}
}

// verifyServingCert checks that certPEM is valid for dnsName and chains to caBundle.
func verifyServingCert(t *testing.T, caBundle, certPEM []byte, dnsName string) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		t.Fatalf("caBundle holds no PEM certificate: %q", caBundle)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("tls.crt is not PEM: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the webhook serving certificate does not verify for %s against caBundle: %v", dnsName, err)
	}
}

// checkRBAC: the proxy can only read; the controller gets exactly the generated rules.
func checkRBAC(t *testing.T, m manifests) {
	t.Helper()
	proxy := get[rbacv1.ClusterRole](t, m, "ClusterRole/"+fullname+"-proxy")
	want := []rbacv1.PolicyRule{{APIGroups: []string{"slugway.io"}, Resources: []string{"instances", "serviceaccounts"}, Verbs: []string{"get", "list", "watch"}}}
	if !equalJSON(t, proxy.Rules, want) {
		t.Errorf("proxy ClusterRole rules %+v, want only get/list/watch on instances and serviceaccounts", proxy.Rules)
	}
	generated, err := os.ReadFile(filepath.Join(env.Root, "config/rbac/role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var gen rbacv1.ClusterRole
	if err := yaml.Unmarshal(bytes.TrimPrefix(generated, []byte("---\n")), &gen); err != nil {
		t.Fatal(err)
	}
	ctrl := get[rbacv1.ClusterRole](t, m, "ClusterRole/"+fullname+"-controller")
	if len(gen.Rules) == 0 || !equalJSON(t, ctrl.Rules, gen.Rules) {
		t.Errorf("controller ClusterRole rules differ from config/rbac/role.yaml:\n got %+v\nwant %+v", ctrl.Rules, gen.Rules)
	}
	le := get[rbacv1.Role](t, m, "Role/"+fullname+"-leader-election")
	if le.Namespace != namespace || le.Rules[0].Resources[0] != "leases" {
		t.Errorf("leader-election Role: %+v", le)
	}
	get[rbacv1.RoleBinding](t, m, "RoleBinding/"+fullname+"-leader-election")
	get[rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding/"+fullname+"-controller")
	get[rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding/"+fullname+"-proxy")
	get[rbacv1.ClusterRole](t, m, "ClusterRole/slugway-service")
	admin := get[rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding/"+fullname+"-admin")
	if len(admin.Subjects) != 1 || admin.Subjects[0].Kind != "Group" || admin.Subjects[0].Name != "slugway:admins" {
		t.Errorf("admin binding subjects %+v, want the group slugway:admins (system:masters needs no binding)", admin.Subjects)
	}
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, name := range m.kinds(kind) {
			var rules []rbacv1.PolicyRule
			if kind == "Role" {
				rules = get[rbacv1.Role](t, m, kind+"/"+name).Rules
			} else {
				rules = get[rbacv1.ClusterRole](t, m, kind+"/"+name).Rules
			}
			for _, r := range rules {
				if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") ||
					slices.Contains(r.Resources, "secrets") {
					t.Errorf("%s %s grants %+v: no wildcards and no Secrets", kind, name, r)
				}
			}
		}
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func checkHardened(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod securityContext %+v, want runAsNonRoot and seccomp RuntimeDefault", d.Name, pod.SecurityContext)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s/%s: securityContext %+v, want read-only root, no privilege escalation, drop ALL", d.Name, c.Name, sc)
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Errorf("%s/%s: liveness and readiness probes are required", d.Name, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: resources %+v, want CPU requests and a memory limit", d.Name, c.Name, c.Resources)
		}
	}
}

func hasPodNamespaceEnv(c corev1.Container) bool {
	for _, e := range c.Env {
		if e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace" {
			return true
		}
	}
	return false
}

func hasPort(c corev1.Container, name string, port int32) bool {
	for _, p := range c.Ports {
		if p.Name == name && p.ContainerPort == port {
			return true
		}
	}
	return false
}

func TestTemplateHALoadBalancer(t *testing.T) {
	m := parse(t, helmTemplate(t, release, namespace, "-f", "testdata/ha-values.yaml"))
	ctrl := get[appsv1.Deployment](t, m, "Deployment/"+fullname+"-controller")
	if ctrl.Spec.Replicas == nil || *ctrl.Spec.Replicas != 2 {
		t.Errorf("controller replicas %v, want 2 with ha.enabled", ctrl.Spec.Replicas)
	}
	if !slices.Contains(ctrl.Spec.Template.Spec.Containers[0].Args, "--leader-elect=true") {
		t.Errorf("HA controller without leader election")
	}
	if a := ctrl.Spec.Template.Spec.Affinity; a == nil || a.PodAntiAffinity == nil {
		t.Errorf("HA controller replicas are not spread over nodes")
	}
	proxy := get[appsv1.Deployment](t, m, "Deployment/"+fullname+"-proxy")
	if proxy.Spec.Replicas != nil {
		t.Errorf("proxy replicas %d set while the HPA owns them", *proxy.Spec.Replicas)
	}
	hpa := get[autoscalingv2.HorizontalPodAutoscaler](t, m, "HorizontalPodAutoscaler/"+fullname+"-proxy")
	if hpa.Spec.ScaleTargetRef.Name != proxy.Name || *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 6 {
		t.Errorf("HPA %+v", hpa.Spec)
	}
	for _, name := range []string{"controller", "proxy"} {
		pdb := get[policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget/"+fullname+"-"+name)
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
			t.Errorf("%s PDB %+v, want minAvailable 1 in HA", name, pdb.Spec)
		}
	}
	svc := get[corev1.Service](t, m, "Service/"+fullname+"-proxy")
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal ||
		!slices.Equal(svc.Spec.LoadBalancerSourceRanges, []string{"10.0.0.0/8"}) {
		t.Errorf("proxy Service %+v, want a LoadBalancer as configured", svc.Spec)
	}
	if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[1].Name != "https" || svc.Spec.Ports[1].Port != 443 || svc.Spec.Ports[1].TargetPort.String() != "https" {
		t.Errorf("proxy Service ports %+v, want http and, with proxy.tls, https", svc.Spec.Ports)
	}
	pc := proxy.Spec.Template.Spec.Containers[0]
	if !slices.Contains(pc.Args, "--tls-cert-file=/var/run/slugway/proxy-tls/tls.crt") || !hasPort(pc, "https", 8443) ||
		len(pc.VolumeMounts) != 1 || proxy.Spec.Template.Spec.Volumes[0].Secret.SecretName != "proxy-cert" {
		t.Errorf("proxy with tls.secretName: args %v ports %+v mounts %+v", pc.Args, pc.Ports, pc.VolumeMounts)
	}
	if metrics := get[corev1.Service](t, m, "Service/"+fullname+"-proxy-metrics"); metrics.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("the admin/metrics port must stay cluster-internal, got %s", metrics.Spec.Type)
	}
	admin := get[rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding/"+fullname+"-admin")
	if len(admin.Subjects) != 1 || admin.Subjects[0].Name != "platform:ops" {
		t.Errorf("admin binding %+v, want the configured group platform:ops", admin.Subjects)
	}
	if args := ctrl.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--admin-groups=system:masters,platform:ops") {
		t.Errorf("controller args %v lack the configured admin groups", args)
	}
	deny := "--deny-cidrs=169.254.0.0/16,fd00:ec2::254/128,100.64.0.0/10"
	if pa := proxy.Spec.Template.Spec.Containers[0].Args; !slices.Contains(pa, deny) || !slices.Contains(pa, "--trusted-proxies=10.0.0.0/8") {
		t.Errorf("proxy args %v lack the configured deny list and trusted proxies", pa)
	}
	if !slices.Contains(ctrl.Spec.Template.Spec.Containers[0].Args, deny) {
		t.Errorf("controller args lack the deny list the proxy has: the SSRF guard must agree")
	}
	checkWebhooks(t, m, namespace)
}

func TestTemplateServiceMonitorOnlyWithPrometheusOperator(t *testing.T) {
	without := parse(t, helmTemplate(t, release, namespace))
	if sms := without.kinds("ServiceMonitor"); len(sms) != 0 {
		t.Errorf("ServiceMonitors %v rendered although monitoring.coreos.com/v1 is absent", sms)
	}
	with := parse(t, helmTemplate(t, release, namespace, "--api-versions", "monitoring.coreos.com/v1"))
	for name, port := range map[string]string{fullname + "-proxy": "admin", fullname + "-controller": "metrics"} {
		sm, ok := with["ServiceMonitor/"+name]
		if !ok {
			t.Fatalf("ServiceMonitor %s not rendered with monitoring.coreos.com/v1; got %v", name, with.keys())
		}
		eps, _, _ := unstructuredSlice(sm.Object, "spec", "endpoints")
		if len(eps) != 1 || eps[0].(map[string]any)["port"] != port {
			t.Errorf("ServiceMonitor %s endpoints %v, want port %s", name, eps, port)
		}
	}
	off := parse(t, helmTemplate(t, release, namespace, "--api-versions", "monitoring.coreos.com/v1", "--set", "serviceMonitor.enabled=false"))
	if sms := off.kinds("ServiceMonitor"); len(sms) != 0 {
		t.Errorf("serviceMonitor.enabled=false still renders %v", sms)
	}
}

func unstructuredSlice(obj map[string]any, fields ...string) ([]any, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, nil
		}
		cur = m[f]
	}
	s, ok := cur.([]any)
	return s, ok, nil
}

func TestTemplateCertManager(t *testing.T) {
	m := parse(t, helmTemplate(t, release, namespace, "--set", "webhook.certManager.enabled=true"))
	if _, ok := m["Secret/"+fullname+"-webhook-tls"]; ok {
		t.Errorf("with cert-manager the chart must not generate the Secret itself")
	}
	cert, ok := m["Certificate/"+fullname+"-webhook"]
	if !ok {
		t.Fatalf("no Certificate rendered: %v", m.keys())
	}
	spec := cert.Object["spec"].(map[string]any)
	if spec["secretName"] != fullname+"-webhook-tls" || !slices.Contains(spec["dnsNames"].([]any), any(fullname+"-webhook."+namespace+".svc")) {
		t.Errorf("Certificate spec %v", spec)
	}
	if _, ok := m["Issuer/"+fullname+"-selfsigned"]; !ok {
		t.Errorf("no self-signed Issuer rendered without issuerRef")
	}
	for _, key := range []string{"ValidatingWebhookConfiguration/" + fullname + "-validating", "MutatingWebhookConfiguration/" + fullname + "-mutating"} {
		u := m[key]
		if u == nil {
			t.Fatalf("%s not rendered", key)
		}
		if got := u.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != namespace+"/"+fullname+"-webhook" {
			t.Errorf("%s inject-ca-from %q", key, got)
		}
		hooks, _, _ := unstructuredSlice(u.Object, "webhooks")
		for _, h := range hooks {
			if cc := h.(map[string]any)["clientConfig"].(map[string]any); cc["caBundle"] != nil {
				t.Errorf("%s: caBundle set although cert-manager injects it", key)
			}
		}
	}
	ext := parse(t, helmTemplate(t, release, namespace, "--set", "webhook.certManager.enabled=true",
		"--set", "webhook.certManager.issuerRef.name=corp-ca", "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer"))
	if _, ok := ext["Issuer/"+fullname+"-selfsigned"]; ok {
		t.Errorf("a self-signed Issuer rendered although issuerRef names one")
	}
	ref := ext["Certificate/"+fullname+"-webhook"].Object["spec"].(map[string]any)["issuerRef"].(map[string]any)
	if ref["name"] != "corp-ca" || ref["kind"] != "ClusterIssuer" {
		t.Errorf("issuerRef %v", ref)
	}
}

func TestTemplateNamespaceSelectorAndFailurePolicy(t *testing.T) {
	m := parse(t, helmTemplate(t, release, namespace, "--set", "webhook.namespaceSelector.matchLabels.slugway=enabled"))
	vwc := get[admissionv1.ValidatingWebhookConfiguration](t, m, "ValidatingWebhookConfiguration/"+fullname+"-validating")
	for _, w := range vwc.Webhooks {
		if w.NamespaceSelector == nil || w.NamespaceSelector.MatchLabels["slugway"] != "enabled" {
			t.Errorf("%s: namespaceSelector %+v not applied", w.Name, w.NamespaceSelector)
		}
	}
	def := parse(t, helmTemplate(t, release, namespace))
	for _, w := range get[admissionv1.ValidatingWebhookConfiguration](t, def, "ValidatingWebhookConfiguration/"+fullname+"-validating").Webhooks {
		if w.NamespaceSelector != nil && (len(w.NamespaceSelector.MatchLabels) > 0 || len(w.NamespaceSelector.MatchExpressions) > 0) {
			t.Errorf("%s: default namespaceSelector %+v excludes namespaces from ownership checks", w.Name, w.NamespaceSelector)
		}
	}
}

func TestValuesSchemaRejectsTypos(t *testing.T) {
	cases := map[string]struct{ values, wantInError string }{
		"nested typo":     {"proxy:\n  servce:\n    type: LoadBalancer\n", "servce"},
		"top-level typo":  {"adminGroup: [ops]\n", "adminGroup"},
		"service type":    {"proxy:\n  service:\n    type: Loadbalancer\n", "/proxy/service/type"},
		"failure policy":  {"webhook:\n  failurePolicy: Never\n", "/webhook/failurePolicy"},
		"replicas string": {"controller:\n  replicas: two\n", "/controller/replicas"},
		"duration":        {"controller:\n  heartbeatRefresh: 30 seconds\n", "/controller/heartbeatRefresh"},
		"webhook typo":    {"webhook:\n  certManger:\n    enabled: true\n", "certManger"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(tc.values), 0o600); err != nil {
				t.Fatal(err)
			}
			out, errOut, err := command("helm", nil, "template", release, chartDir, "--kube-version", kubeVersion, "-f", file)
			if err == nil {
				t.Fatalf("helm template accepted invalid values %q:\n%.300s", tc.values, out)
			}
			if !strings.Contains(errOut, "schema") || !strings.Contains(errOut, tc.wantInError) {
				t.Errorf("error does not point at %q:\n%s", tc.wantInError, errOut)
			}
		})
	}
	// The checked-in example files are valid.
	helmTemplate(t, release, namespace, "-f", "testdata/ha-values.yaml")
}

// The rendered manifests (CRDs included) are accepted by the real apiserver's validation.
func TestRenderedManifestsPassServerDryRun(t *testing.T) {
	ensureNamespace(t, namespace)
	for _, args := range [][]string{nil, {"-f", "testdata/ha-values.yaml"}} {
		rendered := helmTemplate(t, release, namespace, append([]string{"--include-crds"}, args...)...)
		out := must(t, "kubectl", []byte(rendered), "apply", "--dry-run=server", "-f", "-")
		for _, want := range []string{
			"customresourcedefinition.apiextensions.k8s.io/instances.slugway.io",
			"deployment.apps/" + fullname + "-controller",
			"deployment.apps/" + fullname + "-proxy",
			"validatingwebhookconfiguration.admissionregistration.k8s.io/" + fullname + "-validating",
			"(server dry run)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("dry-run output %v lacks %q:\n%s", args, want, out)
			}
		}
		if len(args) > 0 && !strings.Contains(out, "horizontalpodautoscaler.autoscaling/"+fullname+"-proxy") {
			t.Errorf("HA dry-run did not include the HPA:\n%s", out)
		}
	}
}
