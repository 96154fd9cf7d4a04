package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
)

// The demo's identities: each example service registers as a Kubernetes
// ServiceAccount of its own, as it would in a pod (examples/*/deploy.yaml), and
// the impostor is one more, bound to the same ClusterRole, whom the admission
// webhook refuses.
const (
	demoNamespace = "default"
	impostor      = "impostor"
)

func serviceAccountUser(name string) string {
	return "system:serviceaccount:" + demoNamespace + ":" + name
}

// demoIdentities creates the ServiceAccounts skeleton-svc, grpc-svc and
// impostor in the local control plane, binds them to the slugway-service
// ClusterRole (config/rbac/service_role.yaml) and writes a kubeconfig for each
// service, with a client certificate for system:serviceaccount:default:<name>
// (a pod would use its token instead; the apiserver sees the same user).
// It returns the kubeconfig path of each service, and handOver, which gives
// the slugs that earlier runs registered as the admin to their service: call
// it once the controller serves the admission webhooks.
func demoIdentities(ctx context.Context, env *testenv.Env, dataDir string, services ...string) (kubeconfigs map[string]string, handOver func(context.Context) error, err error) {
	if err := applyFile(ctx, env.Client, filepath.Join(env.Root, "config", "rbac", "service_role.yaml")); err != nil {
		return nil, nil, err
	}
	kubeconfigs = map[string]string{}
	for _, name := range append(services, impostor) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: demoNamespace}}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "slugway-service-" + name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "slugway-service"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: demoNamespace}},
		}
		for _, o := range []client.Object{sa, binding} {
			if err := env.Client.Create(ctx, o); client.IgnoreAlreadyExists(err) != nil {
				return nil, nil, fmt.Errorf("creating %s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
			}
		}
		if name == impostor {
			continue
		}
		user := serviceAccountUser(name)
		u, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + demoNamespace}}, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("a client certificate for %s: %w", user, err)
		}
		kc, err := u.KubeConfig()
		if err != nil {
			return nil, nil, err
		}
		path := filepath.Join(dataDir, "kubeconfig-"+name)
		if err := os.WriteFile(path, kc, 0o600); err != nil {
			return nil, nil, err
		}
		kubeconfigs[name] = path
	}
	handOver = func(ctx context.Context) error {
		for _, name := range services {
			if err := handOverSlug(ctx, env.Client, name, serviceAccountUser(name)); err != nil {
				return err
			}
		}
		return nil
	}
	return kubeconfigs, handOver, nil
}

// handOverSlug gives slug to owner if an earlier make run (from before the
// services had identities of their own) registered it as someone else. The
// admission webhook must be up: the controller may still be starting, so a
// failed update is tried again for a minute.
func handOverSlug(ctx context.Context, c client.Client, slug, owner string) error {
	var sa slugwayv1.ServiceAccount
	if err := c.Get(ctx, types.NamespacedName{Name: slug}, &sa); apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if sa.Spec.Owner == owner {
		return nil
	}
	step("handing slug %s from %s to %s (an earlier run registered it as the admin)", slug, sa.Spec.Owner, owner)
	was := sa.DeepCopy()
	sa.Spec.Owner = owner
	deadline := time.Now().Add(time.Minute)
	for {
		err := c.Patch(ctx, &sa, client.MergeFrom(was))
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// applyFile creates the objects of a YAML file, keeping those that exist.
func applyFile(ctx context.Context, c client.Client, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, &obj); client.IgnoreAlreadyExists(err) != nil {
			return fmt.Errorf("%s: %s %s: %w", file, obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
}

// serviceEnv is an example service's environment: where it listens and, with an
// identity of its own, its kubeconfig (the last KUBECONFIG in a process's
// environment is the one it sees).
func serviceEnv(identities map[string]string, name, addr string) []string {
	env := []string{"SELF_URL=http://" + addr, "LISTEN_ADDR=" + addr, "POD_NAMESPACE=" + demoNamespace}
	if kc := identities[name]; kc != "" {
		env = append(env, "KUBECONFIG="+kc)
	}
	return env
}

// ownershipWalkthrough is the walkthrough's part on who owns a slug, when the
// services have identities of their own (the embedded control plane).
func ownershipWalkthrough(identities map[string]string) string {
	if identities["skeleton-svc"] == "" {
		return ""
	}
	return `
  # Ownership: each service registered as its own ServiceAccount, which owns its slug
  kubectl get slugs        # OWNER ` + serviceAccountUser("skeleton-svc") + `
  # Another identity with the same RBAC cannot add an instance to it: the webhook refuses
  echo '{"apiVersion":"slugway.io/v1alpha1","kind":"Instance","metadata":{"name":"hijack","namespace":"default"},"spec":{"slug":"skeleton-svc","url":"http://127.0.0.1:9999"}}' \
    | kubectl --as=` + serviceAccountUser(impostor) + ` create -f -
`
}
