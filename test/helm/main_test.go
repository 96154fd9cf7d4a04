// Package helm_test proves the packaging against a real kube-apiserver: the Helm chart
// (lint, template, server-side dry-run, install, upgrade, uninstall, schema, RBAC),
// the kustomize config, and the Dockerfile's build command.
//
// Installing the chart registers slugway's webhooks (failurePolicy Fail) with no
// controller behind them, after which writes to slugway objects fail. This package
// therefore has its own apiserver, and no test here writes slugway objects.
package helm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slugway/slugway/internal/testenv"
)

var (
	env        *testenv.Env
	assets     string // kubectl and helm live here
	kubeconfig string // the envtest admin's kubeconfig
	helmHome   string // HELM_*_HOME, so helm never touches the user's home
	chartDir   string
)

// kubeVersion is passed to `helm template` and `helm lint`: helm built from source
// (hack/controlplane.sh) defaults to Kubernetes v1.20 without a cluster, which the
// chart's kubeVersion constraint rejects.
var kubeVersion = strings.TrimPrefix(testenv.K8sVersion, "v")

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if assets, err = testenv.AssetsDir(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(assets, "helm")); err != nil {
		fmt.Fprintf(os.Stderr, "no helm in %s: run `make controlplane` (hack/controlplane.sh) first\n", assets)
		return 1
	}
	env, err = testenv.Start(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	tmp, err := os.MkdirTemp("", "slugway-helm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	helmHome = filepath.Join(tmp, "helm")
	chartDir = filepath.Join(env.Root, "charts", "slugway")
	return m.Run()
}

// command runs one of the control-plane tools (helm, kubectl) against the test apiserver.
func command(name string, stdin []byte, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(filepath.Join(assets, name), args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
		"PATH="+assets+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// must runs a tool and fails the test when it fails.
func must(t *testing.T, name string, stdin []byte, args ...string) string {
	t.Helper()
	out, errOut, err := command(name, stdin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func helm(t *testing.T, args ...string) string { t.Helper(); return must(t, "helm", nil, args...) }

// helmTemplate renders the chart like `helm install` would, without a cluster.
func helmTemplate(t *testing.T, release, namespace string, args ...string) string {
	t.Helper()
	return helm(t, append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, args...)...)
}

// manifests are rendered objects by "Kind/name".
type manifests map[string]*unstructured.Unstructured

func parse(t *testing.T, yamlText string) manifests {
	t.Helper()
	out := manifests{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(yamlText), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("rendered YAML does not parse: %v", err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		key := u.GetKind() + "/" + u.GetName()
		if _, dup := out[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		out[key] = u
	}
	return out
}

// get converts the rendered object kind/name into a typed object, failing when it is missing.
func get[T any](t *testing.T, m manifests, kindName string) *T {
	t.Helper()
	u, ok := m[kindName]
	if !ok {
		t.Fatalf("%s was not rendered; rendered: %v", kindName, m.keys())
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("%s: %v", kindName, err)
	}
	return out
}

func (m manifests) keys() []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

func (m manifests) kinds(kind string) []string {
	var names []string
	for _, u := range m {
		if u.GetKind() == kind {
			names = append(names, u.GetName())
		}
	}
	return names
}

// exists reports whether the object exists in the test apiserver.
func exists(t *testing.T, gvk schema.GroupVersionKind, namespace, name string) bool {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, u)
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatalf("get %s %s/%s: %v", gvk.Kind, namespace, name, err)
	}
	return true
}

// eventually polls cond until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	gvkCRD        = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}
	gvkDeployment = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	gvkService    = schema.GroupVersionKind{Version: "v1", Kind: "Service"}
	gvkSecret     = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}
	gvkSA         = schema.GroupVersionKind{Version: "v1", Kind: "ServiceAccount"}
	gvkNamespace  = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	gvkCR         = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}
	gvkCRB        = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}
	gvkRole       = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}
	gvkRB         = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}
	gvkPDB        = schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}
	gvkVWC        = schema.GroupVersionKind{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingWebhookConfiguration"}
	gvkMWC        = schema.GroupVersionKind{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "MutatingWebhookConfiguration"}
)

// slugwayCRDs are slugway's CRDs and the list kind each one serves.
var slugwayCRDs = map[string]schema.GroupVersionKind{
	"instances.slugway.io":       {Group: "slugway.io", Version: "v1alpha1", Kind: "InstanceList"},
	"serviceaccounts.slugway.io": {Group: "slugway.io", Version: "v1alpha1", Kind: "ServiceAccountList"},
}

// deleteCRDs removes slugway's CRDs (which testenv or a rejected helm install created)
// and waits until they are gone, so that a following install has to create them itself.
//
// It first waits until the apiserver serves each CRD's objects from its watch cache (a
// list at resourceVersion 0 succeeds). A CRD deleted sooner after its creation is the
// case that made this test flaky: the apiserver's CRD finalizer lists the objects to
// delete them, gets "storage is (re)initializing", and retries with exponential
// backoff, so the CRD stayed Terminating (InstanceDeletionFailed) for minutes.
func deleteCRDs(t *testing.T) {
	t.Helper()
	for name, listKind := range slugwayCRDs {
		eventually(t, 2*time.Minute, func() error {
			l := &unstructured.UnstructuredList{}
			l.SetGroupVersionKind(listKind)
			if err := env.Client.List(context.Background(), l, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: "0"}}); err != nil {
				return fmt.Errorf("CRD %s is not served yet: %w", name, err)
			}
			return nil
		})
	}
	for name := range slugwayCRDs {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvkCRD)
		u.SetName(name)
		if err := env.Client.Delete(context.Background(), u); client.IgnoreNotFound(err) != nil {
			t.Fatalf("deleting CRD %s: %v", name, err)
		}
	}
	eventually(t, 2*time.Minute, func() error {
		for name := range slugwayCRDs {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(gvkCRD)
			err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, u)
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			return fmt.Errorf("CRD %s still exists: finalizers %v, conditions %v", name, u.GetFinalizers(), conds)
		}
		return nil
	})
}

// ensureNamespace creates a namespace if it does not exist: server-side dry-run of
// namespaced objects needs a real namespace.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkNamespace)
	u.SetName(name)
	if err := env.Client.Create(context.Background(), u); client.IgnoreAlreadyExists(err) != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}
