// Package registry holds the rules of the slug registry that the controller,
// the admission webhooks and the proxy share: who may change a slug, which of
// two instances holds a contested URL, and the cache indexes that answer
// "which instances serve slug X / URL Y" without listing everything.
package registry

import (
	"context"
	"fmt"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// Cache index names on Instances.
const (
	// IndexSlug indexes Instances by spec.slug.
	IndexSlug = "spec.slug"
	// IndexURL indexes Instances by the canonical key of spec.url (see URLKey).
	IndexURL = "spec.url.normalized"
)

// DefaultAdminGroups may change any slug.
var DefaultAdminGroups = []string{"system:masters", "slugway:admins"}

// DefaultReservedSlugs cannot be claimed: they collide with the proxy's own endpoints.
var DefaultReservedSlugs = []string{"healthz", "readyz", "metrics", "slugway"}

// AddIndexes registers the Instance indexes with a cache (a manager's FieldIndexer).
func AddIndexes(ctx context.Context, idx client.FieldIndexer) error {
	if err := idx.IndexField(ctx, &slugwayv1.Instance{}, IndexSlug, IndexInstanceSlug); err != nil {
		return fmt.Errorf("index instances by slug: %w", err)
	}
	if err := idx.IndexField(ctx, &slugwayv1.Instance{}, IndexURL, func(o client.Object) []string {
		return []string{NormalizeURL(o.(*slugwayv1.Instance).Spec.URL)}
	}); err != nil {
		return fmt.Errorf("index instances by url: %w", err)
	}
	return nil
}

// IndexInstanceSlug is the IndexSlug index function: an Instance's spec.slug.
// The proxy's cache registers it alone; it needs no other index.
func IndexInstanceSlug(o client.Object) []string {
	if inst, ok := o.(*slugwayv1.Instance); ok && inst.Spec.Slug != "" {
		return []string{inst.Spec.Slug}
	}
	return nil
}

// Holds reports whether instance a takes precedence over b for a URL both claim:
// the older one wins, and names break ties, so every observer picks the same winner.
func Holds(a, b *slugwayv1.Instance) bool {
	ta, tb := a.CreationTimestamp, b.CreationTimestamp
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// Access says who may change what.
type Access struct {
	AdminGroups []string
	// Controllers are usernames allowed to act on every slug (the slugway controller itself).
	Controllers []string
}

// Privileged reports whether the user is an admin or the controller.
func (a Access) Privileged(username string, groups []string) bool {
	if slices.Contains(a.Controllers, username) {
		return true
	}
	for _, g := range groups {
		if slices.Contains(a.AdminGroups, g) {
			return true
		}
	}
	return false
}

// Owns reports whether username owns the slug claimed by sa.
func Owns(username string, sa *slugwayv1.ServiceAccount) bool {
	return sa != nil && sa.Spec.Owner != "" && sa.Spec.Owner == username
}

// LabelClaimUID is the label on an Instance that records which claim of its slug it
// was admitted under: the UID of the slug's ServiceAccount at admission. The mutating
// webhook sets it at creation and nobody but the controller may change it, so an
// Instance admitted for a claim that was since released (and perhaps claimed again by
// someone else, under a new UID) never belongs to the new claim.
const LabelClaimUID = "slugway.io/claim-uid"

// BoundToClaim reports whether inst belongs to the claim sa, the slug's current
// ServiceAccount: its recorded claim UID is sa's. An Instance without the label
// (created before claims were recorded, or while the webhook was not installed) counts
// as bound when it was created no earlier than sa: it cannot stem from an earlier claim.
func BoundToClaim(inst *slugwayv1.Instance, sa *slugwayv1.ServiceAccount) bool {
	if sa == nil {
		return false
	}
	if uid, ok := inst.Labels[LabelClaimUID]; ok {
		return uid != "" && uid == string(sa.UID)
	}
	return !inst.CreationTimestamp.Before(&sa.CreationTimestamp)
}
