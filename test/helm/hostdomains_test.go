package helm_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// proxy.hostDomains becomes the proxy's --host-domains, and the schema refuses
// what the binary would (a wildcard pattern, a port).
func TestTemplateHostDomains(t *testing.T) {
	args := func(m manifests) []string {
		return get[appsv1.Deployment](t, m, "Deployment/"+fullname+"-proxy").Spec.Template.Spec.Containers[0].Args
	}
	if a := args(parse(t, helmTemplate(t, release, namespace))); slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--host-domains") }) {
		t.Errorf("default proxy args %v route by host; hostDomains is empty by default", a)
	}
	a := args(parse(t, helmTemplate(t, release, namespace, "--set", "proxy.hostDomains={apps.example.com,apps.internal}")))
	if !slices.Contains(a, "--host-domains=apps.example.com,apps.internal") {
		t.Errorf("proxy args %v lack --host-domains=apps.example.com,apps.internal", a)
	}
	for _, bad := range []string{"'*.apps.example.com'", "apps.example.com:8443", "https://apps.example.com"} {
		file := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(file, []byte("proxy:\n  hostDomains: ["+bad+"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := command("helm", nil, "template", release, chartDir, "--kube-version", kubeVersion, "-f", file)
		if err == nil {
			t.Errorf("helm template accepted proxy.hostDomains [%s]:\n%.300s", bad, out)
		} else if !strings.Contains(errOut, "/proxy/hostDomains/0") {
			t.Errorf("hostDomains [%s]: the error does not point at /proxy/hostDomains/0:\n%s", bad, errOut)
		}
	}
}
