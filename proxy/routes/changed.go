package routes

import (
	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/registry"
)

// InstanceChanged reports whether an update from old to new can change what Build
// returns, that is whether it touches anything Build reads: the name, generation,
// slug, URL, app protocol, deletion, health status, or whether the instance counts
// as owned. The controller's heartbeat refreshes (status.lastHeartbeat, and the
// Ready condition's message) change none of these, so a watcher may skip the
// rebuild for them: at 10,000 instances they are hundreds of updates a second.
// When in doubt it says true; TestInstanceChangedCoversBuild keeps it honest.
func InstanceChanged(old, new *slugwayv1.Instance) bool {
	return old.Namespace != new.Namespace || old.Name != new.Name || old.Generation != new.Generation ||
		old.Spec.Slug != new.Spec.Slug || old.Spec.URL != new.Spec.URL || old.Spec.AppProtocol != new.Spec.AppProtocol ||
		old.DeletionTimestamp.IsZero() != new.DeletionTimestamp.IsZero() ||
		old.Status.Status != new.Status.Status ||
		owned(old) != owned(new) ||
		old.Labels[registry.LabelClaimUID] != new.Labels[registry.LabelClaimUID]
}

// SlugChanged reports whether an update of a ServiceAccount can change what Build
// returns: Build reads only its name and whether it is being deleted, not its
// status (instance counts, which change with every health transition).
func SlugChanged(old, new *slugwayv1.ServiceAccount) bool {
	return old.Name != new.Name || old.UID != new.UID || !old.CreationTimestamp.Equal(&new.CreationTimestamp) ||
		old.DeletionTimestamp.IsZero() != new.DeletionTimestamp.IsZero()
}
