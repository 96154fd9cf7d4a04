// Package schema tests the validation that lives in the CRDs themselves (OpenAPI and
// CEL), with no admission webhook installed: these rules hold even when the webhook is
// down or bypassed. Every refusal must say what to fix.
package schema_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/slugway/slugway/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, testenv.Suite{}) }

func serviceAccount(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "slugway.io/v1alpha1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"owner": "alice"},
	}}
}

// instance returns a valid Instance; edit changes its spec before it is sent.
func instance(name string, edit func(spec map[string]any)) *unstructured.Unstructured {
	spec := map[string]any{"slug": "skeleton-svc", "url": "http://skeleton.team-a.svc:8080/"}
	if edit != nil {
		edit(spec)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "slugway.io/v1alpha1", "kind": "Instance",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec":     spec,
	}}
}

func healthCheck(kv ...any) func(map[string]any) {
	return func(spec map[string]any) {
		hc := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			hc[kv[i].(string)] = kv[i+1]
		}
		spec["healthCheck"] = hc
	}
}

func set(key string, v any) func(map[string]any) {
	return func(spec map[string]any) { spec[key] = v }
}

type schemaCase struct {
	name string
	obj  *unstructured.Unstructured
	want []string // substrings of the error; none means the object is valid
}

func run(t *testing.T, cases []schemaCase) {
	t.Helper()
	ctx := context.Background()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj
			if obj.GetName() == "" && obj.GetKind() == "Instance" {
				obj.SetName(fmt.Sprintf("case-%d", i))
			}
			err := env.Client.Create(ctx, obj)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("valid object refused: %v", err)
				}
				_ = env.Client.Delete(ctx, obj)
				return
			}
			if err == nil {
				_ = env.Client.Delete(ctx, obj)
				t.Fatalf("accepted; want refused with %q", tc.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Errorf("want 422 Invalid, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n  does not say %q", err, w)
				}
			}
		})
	}
}
