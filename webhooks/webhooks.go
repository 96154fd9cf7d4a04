// Package webhooks enforces slug ownership at admission: only a slug's owner, an
// admin, or the controller may change the slug's Instances and its ServiceAccount.
// Schema rules (slug format, URL shape, durations) live in the CRDs, so they hold
// even when this webhook is down; this package adds what needs the request's
// identity or other objects.
package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/registry"
)

// Paths the webhooks are served on; config/webhook/manifests.yaml is generated from the markers below.
const (
	PathValidateInstance       = "/validate-slugway-io-v1alpha1-instance"
	PathValidateServiceAccount = "/validate-slugway-io-v1alpha1-serviceaccount"
	PathMutateServiceAccount   = "/mutate-slugway-io-v1alpha1-serviceaccount"
	PathMutateInstance         = "/mutate-slugway-io-v1alpha1-instance"
)

// +kubebuilder:webhook:path=/validate-slugway-io-v1alpha1-instance,mutating=false,failurePolicy=fail,sideEffects=None,groups=slugway.io,resources=instances;instances/status,verbs=create;update;delete,versions=v1alpha1,name=vinstance.slugway.io,admissionReviewVersions=v1,timeoutSeconds=10
// +kubebuilder:webhook:path=/validate-slugway-io-v1alpha1-serviceaccount,mutating=false,failurePolicy=fail,sideEffects=None,groups=slugway.io,resources=serviceaccounts;serviceaccounts/status,verbs=create;update;delete,versions=v1alpha1,name=vserviceaccount.slugway.io,admissionReviewVersions=v1,timeoutSeconds=10
// +kubebuilder:webhook:path=/mutate-slugway-io-v1alpha1-instance,mutating=true,failurePolicy=fail,sideEffects=None,groups=slugway.io,resources=instances,verbs=create,versions=v1alpha1,name=minstance.slugway.io,admissionReviewVersions=v1,timeoutSeconds=10
// +kubebuilder:webhook:path=/mutate-slugway-io-v1alpha1-serviceaccount,mutating=true,failurePolicy=fail,sideEffects=None,groups=slugway.io,resources=serviceaccounts,verbs=create,versions=v1alpha1,name=mserviceaccount.slugway.io,admissionReviewVersions=v1,timeoutSeconds=10

// Config is what the webhooks need to decide.
type Config struct {
	Access registry.Access
	// ReservedSlugs cannot be claimed.
	ReservedSlugs []string
	// Deleters may delete any Instance: the garbage collector and namespace controller,
	// which act on ownerReferences and namespace deletion that an authorized user set up.
	Deleters []string
	// CheckURL, when set, vets an instance URL (the SSRF guard). Its error is shown to the user.
	CheckURL func(ctx context.Context, rawURL string) error
	// MaxInstances, when positive, is how many Instances one slug may have (--max-instances-per-slug).
	MaxInstances int
	// URLHoldGrace: another slug's instance that has been Unreachable this long no
	// longer holds its URL (registry.URLRule, --url-hold-grace). Zero: never.
	URLHoldGrace time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// DefaultDeleters are the kube-controller-manager identities that delete objects on others' behalf.
var DefaultDeleters = []string{
	"system:kube-controller-manager",
	"system:serviceaccount:kube-system:generic-garbage-collector",
	"system:serviceaccount:kube-system:namespace-controller",
}

// Register adds the three webhooks to the manager's webhook server.
// Slug lookups read the apiserver directly (a ServiceAccount applied a moment ago
// must be seen); URL-conflict lookups use the cache's index.
func Register(mgr ctrl.Manager, cfg Config) {
	dec := admission.NewDecoder(mgr.GetScheme())
	srv := mgr.GetWebhookServer()
	srv.Register(PathValidateInstance, &webhook.Admission{Handler: &InstanceValidator{Config: cfg, Slugs: mgr.GetAPIReader(), Instances: mgr.GetClient(), Decoder: dec}})
	srv.Register(PathValidateServiceAccount, &webhook.Admission{Handler: &ServiceAccountValidator{Config: cfg, Decoder: dec}})
	srv.Register(PathMutateServiceAccount, &webhook.Admission{Handler: &ServiceAccountDefaulter{Decoder: dec}})
	srv.Register(PathMutateInstance, &webhook.Admission{Handler: &InstanceClaimRecorder{Slugs: mgr.GetAPIReader(), Decoder: dec}})
}

// notOwner is the denial every ownership check gives: who, what, why, and who could.
func notOwner(cfg Config, user, verb, what, slug, owner string) admission.Response {
	return admission.Denied(fmt.Sprintf("user %q does not own slug %q (owner %q): only the owner, the slugway controller, or a member of %s may %s %s",
		user, slug, owner, groupList(cfg.Access.AdminGroups), verb, what))
}

func groupList(groups []string) string {
	q := make([]string, len(groups))
	for i, g := range groups {
		q[i] = fmt.Sprintf("%q", g)
	}
	return "the groups " + strings.Join(q, ", ")
}

func verbOf(op string) string {
	return strings.ToLower(op)
}

func decodeBoth(dec admission.Decoder, req admission.Request, obj, old runtime.Object) error {
	if len(req.Object.Raw) > 0 {
		if err := dec.DecodeRaw(req.Object, obj); err != nil {
			return err
		}
	}
	if len(req.OldObject.Raw) > 0 {
		if err := dec.DecodeRaw(req.OldObject, old); err != nil {
			return err
		}
	}
	return nil
}

// InstanceValidator guards Instances and their status.
type InstanceValidator struct {
	Config
	Slugs     client.Reader // fresh reads of ServiceAccounts
	Instances client.Reader // cached, indexed Instances
	Decoder   admission.Decoder
}

// Handle implements admission.Handler.
func (v *InstanceValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	var inst, old slugwayv1.Instance
	if err := decodeBoth(v.Decoder, req, &inst, &old); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation == "DELETE" {
		inst = old
	}
	user, groups := req.UserInfo.Username, req.UserInfo.Groups
	what := fmt.Sprintf("instance %s/%s", req.Namespace, req.Name)
	privileged := v.Access.Privileged(user, groups)
	if req.Operation == "DELETE" && slices.Contains(v.Deleters, user) {
		return admission.Allowed("garbage collection")
	}

	if req.SubResource == "status" {
		if privileged {
			return admission.Allowed("")
		}
		if resp, ok := v.requireOwner(ctx, user, "write the status of", what, old.Spec.Slug); !ok {
			return resp
		}
		// The owner may renew its heartbeat, and nothing else: health is the controller's word.
		renewed := old.Status.DeepCopy()
		renewed.LastHeartbeat = inst.Status.LastHeartbeat
		if !equalJSON(renewed, &inst.Status) {
			return admission.Denied(fmt.Sprintf("user %q may only renew status.lastHeartbeat of %s: the rest of the status is written by the slugway controller", user, what))
		}
		return admission.Allowed("heartbeat renewal by the owner")
	}

	if req.Operation != "DELETE" && v.CheckURL != nil && (req.Operation == "CREATE" || old.Spec.URL != inst.Spec.URL) {
		if err := v.CheckURL(ctx, inst.Spec.URL); err != nil {
			return admission.Denied(fmt.Sprintf("spec.url %q is not allowed: %v", inst.Spec.URL, err))
		}
	}
	if req.Operation == "CREATE" || (req.Operation == "UPDATE" && old.Spec.Slug != inst.Spec.Slug) {
		// Nobody, admins included, may pre-plant instances for a slug that is not claimed, or
		// add them to a slug being released: they would be inherited by the slug's next claimant.
		sa, resp, ok := v.requireLiveSlug(ctx, inst.Spec.Slug, verbOf(string(req.Operation)), what)
		if !ok {
			return resp
		}
		if resp, ok := v.requireRoom(ctx, inst.Spec.Slug, what); !ok {
			return resp
		}
		if req.Operation == "CREATE" && inst.Labels[registry.LabelClaimUID] != string(sa.UID) {
			// The mutating webhook recorded the claim it saw; the slug was released and
			// claimed again since, or the label was set by hand.
			return admission.Denied(fmt.Sprintf("%s carries %s=%q, but the current claim of slug %q has UID %q: the slug was released and claimed again while the instance was being created; create it again",
				what, registry.LabelClaimUID, inst.Labels[registry.LabelClaimUID], inst.Spec.Slug, sa.UID))
		}
	}
	if !privileged {
		if resp, ok := v.requireOwner(ctx, user, verbOf(string(req.Operation)), what, inst.Spec.Slug); !ok {
			return resp
		}
		if req.Operation == "UPDATE" && old.Spec.Slug != inst.Spec.Slug {
			// The CRD forbids this too; check the old slug so the webhook stands on its own.
			if resp, ok := v.requireOwner(ctx, user, "move", what, old.Spec.Slug); !ok {
				return resp
			}
		}
		// The claim the instance was admitted under is the controller's and admins' to
		// change (an admin adopts an instance by setting it), never the owner's.
		if was, now := old.Labels[registry.LabelClaimUID], inst.Labels[registry.LabelClaimUID]; req.Operation == "UPDATE" && was != now {
			return admission.Denied(fmt.Sprintf("user %q may not change the label %s of %s from %q to %q: it records the claim of slug %q the instance was admitted under; delete the instance and create it again",
				user, registry.LabelClaimUID, what, was, now, old.Spec.Slug))
		}
	}
	if req.Operation == "CREATE" || (req.Operation == "UPDATE" && old.Spec.URL != inst.Spec.URL) {
		key, err := registry.URLKey(inst.Spec.URL)
		if err != nil {
			return admission.Denied(fmt.Sprintf("spec.url %q has no canonical form, so it cannot be checked against other slugs' URLs: %v", inst.Spec.URL, err))
		}
		if req.Operation == "CREATE" || registry.NormalizeURL(old.Spec.URL) != key {
			return v.checkURLFree(ctx, &inst, key)
		}
	}
	return admission.Allowed("")
}

// requireOwner allows the slug's owner; anyone else gets a denial that says who owns it.
func (v *InstanceValidator) requireOwner(ctx context.Context, user, verb, what, slug string) (admission.Response, bool) {
	var sa slugwayv1.ServiceAccount
	if err := v.Slugs.Get(ctx, types.NamespacedName{Name: slug}, &sa); err != nil {
		if apierrors.IsNotFound(err) {
			return notClaimed(slug, verb, what), false
		}
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("looking up slug %q: %w", slug, err)), false
	}
	if !registry.Owns(user, &sa) {
		return notOwner(v.Config, user, verb, what, slug, sa.Spec.Owner), false
	}
	return admission.Response{}, true
}

// requireLiveSlug refuses a slug that is not claimed or whose ServiceAccount is being deleted.
func (v *InstanceValidator) requireLiveSlug(ctx context.Context, slug, verb, what string) (*slugwayv1.ServiceAccount, admission.Response, bool) {
	var sa slugwayv1.ServiceAccount
	if err := v.Slugs.Get(ctx, types.NamespacedName{Name: slug}, &sa); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, notClaimed(slug, verb, what), false
		}
		return nil, admission.Errored(http.StatusInternalServerError, fmt.Errorf("looking up slug %q: %w", slug, err)), false
	}
	if !sa.DeletionTimestamp.IsZero() {
		return nil, admission.Denied(fmt.Sprintf("slug %q is being released (its ServiceAccount is being deleted, with its instances): wait until it is gone and claim it again before you create %s", slug, what)), false
	}
	return &sa, admission.Response{}, true
}

// requireRoom refuses an Instance beyond MaxInstances for its slug, for everyone: the
// bound protects the controller's and the proxy's memory. It counts from the cache, so
// creates racing within the cache's lag can overshoot by their number.
func (v *InstanceValidator) requireRoom(ctx context.Context, slug, what string) (admission.Response, bool) {
	if v.MaxInstances <= 0 {
		return admission.Response{}, true
	}
	var list slugwayv1.InstanceList
	if err := v.Instances.List(ctx, &list, client.MatchingFields{registry.IndexSlug: slug}); err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("counting the instances of slug %q: %w", slug, err)), false
	}
	if n := len(list.Items); n >= v.MaxInstances {
		return admission.Denied(fmt.Sprintf("slug %q already has %d instances, the most the controller's --max-instances-per-slug (%d) allows: delete instances it no longer needs before you create %s, or ask an admin to raise the limit",
			slug, n, v.MaxInstances, what)), false
	}
	return admission.Response{}, true
}

func notClaimed(slug, verb, what string) admission.Response {
	return admission.Denied(fmt.Sprintf("slug %q is not claimed: create the ServiceAccount %q (kind ServiceAccount, apiVersion slugway.io/v1alpha1) before you %s %s", slug, slug, verb, what))
}

// checkURLFree refuses a URL already served by another slug's instance, in any
// spelling: instances are indexed by the canonical key of their URL (registry.URLKey).
// Under registry.URLRule, an instance that has been Unreachable for URLHoldGrace (or
// that already lost the URL so) yields: the newcomer is admitted and the controller
// makes it the holder.
func (v *InstanceValidator) checkURLFree(ctx context.Context, inst *slugwayv1.Instance, key string) admission.Response {
	var same slugwayv1.InstanceList
	if err := v.Instances.List(ctx, &same, client.MatchingFields{registry.IndexURL: key}); err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("looking up instances with URL %s: %w", inst.Spec.URL, err))
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	rule := registry.URLRule{Grace: v.URLHoldGrace, Now: now()}
	for _, o := range same.Items {
		if o.Spec.Slug != inst.Spec.Slug && o.DeletionTimestamp.IsZero() && !(o.Namespace == inst.Namespace && o.Name == inst.Name) && !rule.Yields(&o) {
			spelled := ""
			if o.Spec.URL != inst.Spec.URL {
				spelled = fmt.Sprintf(" as %s (both are %s)", o.Spec.URL, key)
			}
			return admission.Denied(fmt.Sprintf("URL %s is already served by instance %s/%s of slug %q%s: one URL belongs to one slug%s", inst.Spec.URL, o.Namespace, o.Name, o.Spec.Slug, spelled, graceNote(rule, &o)))
		}
	}
	return admission.Allowed("")
}

// graceNote tells, for a holder that is Unreachable, when it will yield its URL.
func graceNote(rule registry.URLRule, holder *slugwayv1.Instance) string {
	if rule.Grace <= 0 {
		return ""
	}
	since, ok := registry.UnreachableSince(holder)
	if !ok {
		return fmt.Sprintf(" (it yields the URL only after being Unreachable for --url-hold-grace, %s)", rule.Grace)
	}
	return fmt.Sprintf(" (it has been Unreachable since %s and yields the URL at %s, after --url-hold-grace of %s: register it again then)",
		since.UTC().Format(time.RFC3339), since.Add(rule.Grace).UTC().Format(time.RFC3339), rule.Grace)
}

// ServiceAccountValidator guards slug claims: reserved names, the owner field, and who may change or release a slug.
type ServiceAccountValidator struct {
	Config
	Decoder admission.Decoder
}

// Handle implements admission.Handler.
func (v *ServiceAccountValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	var sa, old slugwayv1.ServiceAccount
	if err := decodeBoth(v.Decoder, req, &sa, &old); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	user, groups := req.UserInfo.Username, req.UserInfo.Groups
	privileged := v.Access.Privileged(user, groups)
	what := fmt.Sprintf("slug %q", req.Name)

	switch {
	case req.Operation == "CREATE":
		if slices.Contains(v.ReservedSlugs, sa.Name) {
			return admission.Denied(fmt.Sprintf("slug %q is reserved (reserved: %s): pick another name", sa.Name, strings.Join(v.ReservedSlugs, ", ")))
		}
		if sa.Spec.Owner != "" && sa.Spec.Owner != user && !privileged {
			return admission.Denied(fmt.Sprintf("user %q may not claim slug %q for %q: leave spec.owner empty to claim it for yourself; only admins may claim for others", user, sa.Name, sa.Spec.Owner))
		}
		return admission.Allowed("")
	case privileged:
		return admission.Allowed("")
	case req.SubResource == "status":
		return admission.Denied(fmt.Sprintf("user %q may not write the status of %s: it is written by the slugway controller", user, what))
	case !registry.Owns(user, &old):
		return notOwner(v.Config, user, verbOf(string(req.Operation)), what, old.Name, old.Spec.Owner)
	case req.Operation == "UPDATE" && sa.Spec.Owner != old.Spec.Owner:
		return admission.Denied(fmt.Sprintf("user %q may not change spec.owner of %s from %q to %q: only members of %s may transfer a slug", user, what, old.Spec.Owner, sa.Spec.Owner, groupList(v.Access.AdminGroups)))
	case req.Operation == "UPDATE" && controllerutil.ContainsFinalizer(&old, slugwayv1.FinalizerInstances) && !controllerutil.ContainsFinalizer(&sa, slugwayv1.FinalizerInstances):
		// Without it, deleting the slug would leave its instances for the next claimant.
		return admission.Denied(fmt.Sprintf("user %q may not remove the finalizer %q from %s: the slugway controller removes it after deleting the slug's instances, so that the next claimant of the slug does not inherit them", user, slugwayv1.FinalizerInstances, what))
	}
	return admission.Allowed("")
}

// ServiceAccountDefaulter fills spec.owner with the creating user when it is empty,
// and adds the instance-deleting finalizer from the start, so that a slug deleted
// before the controller has seen it still takes its instances with it.
type ServiceAccountDefaulter struct {
	Decoder admission.Decoder
}

// Handle implements admission.Handler.
func (d *ServiceAccountDefaulter) Handle(_ context.Context, req admission.Request) admission.Response {
	var sa slugwayv1.ServiceAccount
	if err := d.Decoder.DecodeRaw(req.Object, &sa); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	changed := controllerutil.AddFinalizer(&sa, slugwayv1.FinalizerInstances)
	if sa.Spec.Owner == "" {
		sa.Spec.Owner = req.UserInfo.Username
		changed = true
	}
	if !changed {
		return admission.Allowed("owner and finalizer set")
	}
	return patchFrom(req.Object.Raw, &sa)
}

// InstanceClaimRecorder records, on every new Instance, the claim of its slug it is
// admitted under: the label registry.LabelClaimUID set to the UID of the slug's
// ServiceAccount, read from the apiserver. The controller and the proxy never count an
// Instance whose recorded claim is not the slug's current one, so a slug that is
// released and claimed again starts clean. An unclaimed slug is left to the
// validating webhook, which refuses it.
type InstanceClaimRecorder struct {
	Slugs   client.Reader
	Decoder admission.Decoder
}

// Handle implements admission.Handler.
func (d *InstanceClaimRecorder) Handle(ctx context.Context, req admission.Request) admission.Response {
	var inst slugwayv1.Instance
	if err := d.Decoder.DecodeRaw(req.Object, &inst); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	var sa slugwayv1.ServiceAccount
	if err := d.Slugs.Get(ctx, types.NamespacedName{Name: inst.Spec.Slug}, &sa); err != nil {
		if apierrors.IsNotFound(err) {
			return admission.Allowed("slug not claimed: the validating webhook refuses the instance")
		}
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("looking up slug %q: %w", inst.Spec.Slug, err))
	}
	if inst.Labels[registry.LabelClaimUID] == string(sa.UID) {
		return admission.Allowed("claim recorded")
	}
	if inst.Labels == nil {
		inst.Labels = map[string]string{}
	}
	inst.Labels[registry.LabelClaimUID] = string(sa.UID)
	return patchFrom(req.Object.Raw, &inst)
}
