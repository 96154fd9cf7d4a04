package kubeclient

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// PatchHeartbeat sets the Instance's status.lastHeartbeat to at, truncated to the
// second as the API stores it, with one JSON merge patch on the status subresource
// that holds nothing else: no read, no resourceVersion, no conflict. The controller
// writes probe successes this way and the SDK its heartbeats.
func PatchHeartbeat(ctx context.Context, c client.Client, key types.NamespacedName, at time.Time) error {
	patch := fmt.Appendf(nil, `{"status":{"lastHeartbeat":%q}}`, HeartbeatTime(at).UTC().Format(time.RFC3339))
	obj := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	return c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
}

// HeartbeatTime is at as lastHeartbeat stores it: to the second.
func HeartbeatTime(at time.Time) metav1.Time { return metav1.NewTime(at.Truncate(time.Second)) }
