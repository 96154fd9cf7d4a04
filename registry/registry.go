// Package registry holds the rules of the slug registry that the controller,
// the admission webhooks and the proxy share: who may change a slug, which of
// two instances holds a contested URL, and the cache indexes that answer
// "which instances serve slug X / URL Y" without listing everything.
package registry

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
)

// Cache index names on Instances.
const (
	// IndexSlug indexes Instances by spec.slug.
	IndexSlug = "spec.slug"
	// IndexURL indexes Instances by their normalized spec.url (see NormalizeURL).
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

// NormalizeURL returns the form under which two instance URLs count as the same
// endpoint: lowercase scheme and host, default port dropped, no trailing slash.
// An unparsable URL is returned as is.
func NormalizeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host + strings.TrimSuffix(u.EscapedPath(), "/")
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

// URLHolder returns, among instances sharing one normalized URL, the one of
// another slug that holds the URL ahead of inst, or nil if inst is not in conflict.
func URLHolder(inst *slugwayv1.Instance, sameURL []slugwayv1.Instance) *slugwayv1.Instance {
	var holder *slugwayv1.Instance
	for i := range sameURL {
		other := &sameURL[i]
		if other.Spec.Slug == inst.Spec.Slug || other.DeletionTimestamp != nil {
			continue
		}
		if Holds(other, inst) && (holder == nil || Holds(other, holder)) {
			holder = other
		}
	}
	return holder
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
