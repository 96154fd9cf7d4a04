package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/slugway/slugway/sdk"
)

// A service registers at start and deregisters when it stops. Everything not given
// comes from the environment: SELF_URL, POD_NAME, POD_NAMESPACE, POD_UID, and the
// pod's service account (or KUBECONFIG outside a cluster).
func ExampleRegister() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // don't wait forever for the apiserver
	defer cancel()
	reg, err := sdk.Register(ctx, sdk.Options{
		Slug:        "skeleton-svc",
		DisplayName: "Skeleton Svc",
		HealthCheck: sdk.Heartbeat(30 * time.Second), // or leave it out: the controller probes GET /healthz
	})
	var owned *sdk.SlugOwnedError
	switch {
	case errors.As(err, &owned):
		fmt.Fprintf(os.Stderr, "pick another slug: %v\n", owned)
		os.Exit(1)
	case err != nil:
		fmt.Fprintf(os.Stderr, "cannot register: %v\n", err)
		os.Exit(1)
	}
	defer func() { _ = reg.Close(context.Background()) }()
	fmt.Println("registered as", reg.Instance())
	// ... serve until SIGTERM ...
}
