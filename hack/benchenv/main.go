// Command benchenv gives hack/bench-proxy.sh a real control plane: it starts
// kube-apiserver and etcd (envtest, binaries from bin/), registers slug "bench"
// with one Healthy instance at -origin, writes an admin kubeconfig, prints
// "ready", and runs until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/internal/testenv"
)

func main() {
	origin := flag.String("origin", "http://127.0.0.1:28081", "URL of the instance to register")
	kubeconfig := flag.String("write-kubeconfig", "bench.kubeconfig", "where to write the admin kubeconfig")
	flag.Parse()
	if err := run(*origin, *kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "benchenv:", err)
		os.Exit(1)
	}
}

func run(origin, kubeconfig string) error {
	env, err := testenv.Start(false)
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: slugwayv1.ServiceAccountSpec{Owner: "bench"}}); err != nil {
		return err
	}
	inst := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Name: "bench-1", Namespace: "default"}, Spec: slugwayv1.InstanceSpec{Slug: "bench", URL: origin}}
	if err := env.Client.Create(ctx, inst); err != nil {
		return err
	}
	inst.Status.Status = slugwayv1.HealthHealthy
	apimeta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{Type: slugwayv1.ConditionOwned, Status: metav1.ConditionTrue, Reason: slugwayv1.ReasonSlugClaimed, ObservedGeneration: inst.Generation})
	if err := env.Client.Status().Update(ctx, inst); err != nil {
		return err
	}
	user, err := env.AddUser(envtest.User{Name: "bench-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	return nil
}
