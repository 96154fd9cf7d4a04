// Package kubeclient is what every slugway component needs to talk to the
// apiserver, in one place: the scheme (the core Kubernetes types and slugway's),
// a client built on it, and WhoAmI. The controller, the proxy and the SDK all
// use it, so it imports nothing of slugway but the API types: linking it pulls
// no control-plane code into the data plane or the SDK.
package kubeclient

import (
	"context"
	"errors"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// Scheme returns a new scheme with the core Kubernetes types and slugway's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, slugwayv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // the types are compiled in: this cannot fail at run time
		}
	}
	return s
}

// New returns a client for cfg that knows slugway's types.
func New(cfg *rest.Config) (client.Client, error) {
	return client.New(cfg, client.Options{Scheme: Scheme()})
}

// ErrNoUsername is WhoAmI's answer when the apiserver authenticated nobody.
var ErrNoUsername = errors.New("the apiserver's SelfSubjectReview returned no username: an authenticated identity is needed (a service account token or a kubeconfig user)")

// WhoAmI asks the apiserver, with a SelfSubjectReview, for the username of c's
// credentials: the identity the ownership webhook sees. The apiserver's errors are
// returned as they are, so callers can tell transient ones from refusals.
func WhoAmI(ctx context.Context, c client.Client) (string, error) {
	review := &authnv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return "", err
	}
	if review.Status.UserInfo.Username == "" {
		return "", ErrNoUsername
	}
	return review.Status.UserInfo.Username, nil
}
