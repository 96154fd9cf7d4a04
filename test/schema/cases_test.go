package schema_test

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestServiceAccountSlug(t *testing.T) {
	run(t, []schemaCase{
		{"valid", serviceAccount("skeleton-svc"), nil},
		{"valid single char", serviceAccount("a"), nil},
		{"valid 63 chars", serviceAccount(strings.Repeat("a", 63)), nil},
		{"uppercase", serviceAccount("Skeleton-Svc"), []string{"the slug (metadata.name) must be a lowercase DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"}},
		{"too long", serviceAccount(strings.Repeat("a", 64)), []string{"the slug (metadata.name) must be at most 63 characters"}},
		{"leading dash", serviceAccount("-svc"), []string{"the slug (metadata.name) must be a lowercase DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"}},
		{"trailing dash", serviceAccount("svc-"), []string{"the slug (metadata.name) must be a lowercase DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"}},
		{"dot", serviceAccount("skeleton.svc"), []string{"the slug (metadata.name) must be a lowercase DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"}},
		{"empty", serviceAccount(""), []string{"metadata.name: Required value: name or generateName is required"}},
	})
}

func TestInstanceSlug(t *testing.T) {
	run(t, []schemaCase{
		{"valid", instance("", set("slug", "skeleton-svc")), nil},
		{"uppercase", instance("", set("slug", "Skeleton")), []string{`spec.slug: Invalid value: "Skeleton"`, "spec.slug must be a lowercase DNS label, the name of the slug's ServiceAccount"}},
		{"too long", instance("", set("slug", strings.Repeat("a", 64))), []string{"spec.slug: Too long: may not be more than 63 bytes"}},
		{"leading dash", instance("", set("slug", "-svc")), []string{`"-svc"`, "spec.slug must be a lowercase DNS label, the name of the slug's ServiceAccount", "starting and ending with a letter or digit"}},
		{"trailing dash", instance("", set("slug", "svc-")), []string{`"svc-"`, "spec.slug must be a lowercase DNS label, the name of the slug's ServiceAccount"}},
		{"dot", instance("", set("slug", "a.b")), []string{"spec.slug must be a lowercase DNS label, the name of the slug's ServiceAccount", "lowercase letters, digits and '-'"}},
		{"empty", instance("", set("slug", "")), []string{"spec.slug in body should be at least 1 chars long"}},
		{"missing", instance("", func(s map[string]any) { delete(s, "slug") }), []string{"spec.slug: Required value"}},
	})
}

func TestInstanceURL(t *testing.T) {
	run(t, []schemaCase{
		{"http", instance("", set("url", "http://10.0.0.7:8080")), nil},
		{"https with path", instance("", set("url", "https://skeleton.example.com/base/")), nil},
		{"ipv6", instance("", set("url", "http://[2001:db8::1]:8080/")), nil},
		{"userinfo", instance("", set("url", "http://user:secret@skeleton:8080/")), []string{"spec.url must not contain userinfo (user:password@)", "pass credentials another way"}},
		{"user only", instance("", set("url", "http://user@skeleton:8080/")), []string{"spec.url must not contain userinfo"}},
		{"fragment", instance("", set("url", "http://skeleton:8080/#top")), []string{"spec.url must not contain a fragment (#...)"}},
		{"no host", instance("", set("url", "http:///path")), []string{"spec.url must have a host"}},
		{"scheme only", instance("", set("url", "http://")), []string{"spec.url must have a host"}},
		{"ftp", instance("", set("url", "ftp://skeleton/")), []string{`"ftp://skeleton/"`, "spec.url must be an absolute http:// or https:// URL"}},
		{"file", instance("", set("url", "file:///etc/passwd")), []string{"spec.url must be an absolute http:// or https:// URL"}},
		{"relative path", instance("", set("url", "/skeleton")), []string{"spec.url must be an absolute http:// or https:// URL"}},
		{"scheme-relative", instance("", set("url", "//skeleton:8080/")), []string{"spec.url must be an absolute http:// or https:// URL"}},
		{"host:port without scheme", instance("", set("url", "skeleton:8080")), []string{"spec.url must be an absolute http:// or https:// URL"}},
		{"empty", instance("", set("url", "")), []string{"spec.url must be an absolute http:// or https:// URL"}},
		{"spaces", instance("", set("url", "http://skel eton/")), []string{"spec.url must be an absolute http:// or https:// URL"}},
	})
}

func TestInstanceHealthCheck(t *testing.T) {
	run(t, []schemaCase{
		{"defaults", instance("", nil), nil},
		{"explicit", instance("", healthCheck("type", "http", "path", "/ready", "interval", "5s", "timeout", "1s", "degradedAfter", "500ms", "healthyThreshold", 2, "unhealthyThreshold", 5)), nil},
		{"heartbeat", instance("", healthCheck("type", "heartbeat", "ttl", "15s")), nil},
		{"interval equals timeout", instance("", healthCheck("interval", "2s", "timeout", "2s")), []string{"healthCheck.interval must be greater than healthCheck.timeout"}},
		// Issue #14's unbounded settings, and the bounds themselves.
		{"a day-long check", instance("", healthCheck("interval", "25h", "timeout", "24h")), []string{"healthCheck.interval must be at most 1h", "healthCheck.timeout must be at most 30s"}},
		{"a 2ms interval", instance("", healthCheck("interval", "2ms", "timeout", "1ms", "degradedAfter", "1ms")), []string{"healthCheck.interval must be at least 1s"}},
		{"timeout above 30s", instance("", healthCheck("interval", "1m", "timeout", "31s")), []string{"healthCheck.timeout must be at most 30s"}},
		{"the fastest check", instance("", healthCheck("interval", "1s", "timeout", "500ms")), nil},
		{"the slowest check", instance("", healthCheck("interval", "1h", "timeout", "30s")), nil},
		{"interval below timeout", instance("", healthCheck("interval", "1s", "timeout", "2s")), []string{"healthCheck.interval must be greater than healthCheck.timeout"}},
		{"timeout above the default interval", instance("", healthCheck("timeout", "15s")), []string{"healthCheck.interval must be greater than healthCheck.timeout"}},
		{"degradedAfter above timeout", instance("", healthCheck("timeout", "1s", "degradedAfter", "2s")), []string{"healthCheck.degradedAfter must not exceed healthCheck.timeout"}},
		{"zero timeout", instance("", healthCheck("timeout", "0s", "degradedAfter", "0s")), []string{"healthCheck.timeout must be positive, for example 2s"}},
		{"negative timeout", instance("", healthCheck("timeout", "-1s", "degradedAfter", "-2s")), []string{"healthCheck.timeout must be positive"}},
		{"zero degradedAfter", instance("", healthCheck("degradedAfter", "0s")), []string{"healthCheck.degradedAfter must be positive, for example 1s"}},
		{"zero healthyThreshold", instance("", healthCheck("healthyThreshold", 0)), []string{"spec.healthCheck.healthyThreshold: Invalid value: 0", "should be greater than or equal to 1"}},
		{"negative healthyThreshold", instance("", healthCheck("healthyThreshold", -1)), []string{"spec.healthCheck.healthyThreshold: Invalid value: -1", "should be greater than or equal to 1"}},
		{"zero unhealthyThreshold", instance("", healthCheck("unhealthyThreshold", 0)), []string{"spec.healthCheck.unhealthyThreshold: Invalid value: 0", "should be greater than or equal to 1"}},
		{"negative unhealthyThreshold", instance("", healthCheck("unhealthyThreshold", -3)), []string{"spec.healthCheck.unhealthyThreshold: Invalid value: -3", "should be greater than or equal to 1"}},
		{"huge threshold", instance("", healthCheck("unhealthyThreshold", 1000)), []string{"should be less than or equal to 100"}},
		{"short ttl", instance("", healthCheck("type", "heartbeat", "ttl", "500ms")), []string{"healthCheck.ttl must be at least 1s"}},
		{"not a duration", instance("", healthCheck("interval", "ten seconds")), []string{`spec.healthCheck.interval in body must be of type duration: "ten seconds"`}},
		{"unknown type", instance("", healthCheck("type", "grpc")), []string{`spec.healthCheck.type: Unsupported value: "grpc": supported values: "http", "tcp", "heartbeat"`}},
		{"path with a space", instance("", healthCheck("path", "/health z")), []string{"healthCheck.path must start with '/'"}},
		{"path with a fragment", instance("", healthCheck("path", "/healthz#x")), []string{"healthCheck.path must start with '/'"}},
		{"path without slash", instance("", healthCheck("path", "healthz")), []string{"healthCheck.path must start with '/' and contain no whitespace or '#', for example /healthz"}},
		{"unknown appProtocol", instance("", set("appProtocol", "grpc")), []string{`spec.appProtocol: Unsupported value: "grpc": supported values: "http", "h2c"`}},
	})
}

// TestInstanceSlugImmutable: an instance cannot be moved to another slug, by anyone;
// the schema says so even without the webhook.
func TestInstanceSlugImmutable(t *testing.T) {
	ctx := context.Background()
	inst := instance("immutable", nil)
	if err := env.Client.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	defer env.Client.Delete(ctx, inst)
	for name, patch := range map[string]client.Patch{
		"merge patch": client.RawPatch(types.MergePatchType, []byte(`{"spec":{"slug":"other-svc"}}`)),
		"JSON patch":  client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/slug","value":"other-svc"}]`)),
	} {
		err := env.Client.Patch(ctx, inst.DeepCopy(), patch)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.slug is immutable: delete the Instance and create a new one for another slug") {
			t.Errorf("%s of spec.slug: %v, want it refused as immutable with what to do instead", name, err)
		}
	}
	// Other fields stay editable.
	if err := env.Client.Patch(ctx, inst.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"url":"http://skeleton.team-a.svc:9090/"}}`))); err != nil {
		t.Fatalf("changing spec.url: %v", err)
	}
}
