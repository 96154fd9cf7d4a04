// Package sdk lets a service register itself with slugway using its own Kubernetes
// identity: it claims its slug (a cluster-scoped slugway ServiceAccount), registers
// its URL as an Instance, keeps that Instance alive while the service runs, and
// deletes it on Close.
//
//	reg, err := sdk.Register(ctx, sdk.Options{Slug: "skeleton-svc", DisplayName: "Skeleton Svc"})
//	if err != nil { ... }           // *sdk.SlugOwnedError, validation errors, or ctx's error
//	defer reg.Close(context.Background())
//
// Everything not given in Options comes from the environment: the URL from SELF_URL,
// the pod from POD_NAME, POD_NAMESPACE and POD_UID (the downward API), and the
// credentials from the pod's service account in-cluster or from KUBECONFIG
// (or ~/.kube/config) outside.
//
// The Instance is named after the slug and the pod (or, without a pod, a hash of the
// URL), so registering again after a restart updates the same Instance instead of
// adding one. With a pod, the Instance has an ownerReference to it and Kubernetes'
// garbage collector deletes it with the pod, even when Close never ran.
//
// Transient apiserver failures (unreachable, 5xx, 429, conflicts) are retried with
// backoff; Register returns permanent ones (the slug belongs to someone else, the
// webhook or the schema refuses the Instance) at once.
package sdk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/registry"
)

// Environment variables read when the matching Options field is empty.
const (
	EnvSelfURL      = "SELF_URL"
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvPodUID       = "POD_UID"
)

// Labels the SDK puts on the Instances it creates.
const (
	LabelSlug      = "slugway.io/slug"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "slugway-sdk"
)

// inClusterNamespaceFile holds the pod's namespace when a service account token is mounted.
var inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Options say what to register. Only Slug is required; the rest has defaults.
type Options struct {
	// Slug is the slug to claim and serve, e.g. "skeleton-svc": a lowercase DNS label.
	Slug string
	// DisplayName is set on the slug's ServiceAccount when this call creates it.
	DisplayName string
	// URL is where this instance is reachable, e.g. "http://10.1.2.3:9311". Default: $SELF_URL.
	URL string
	// Namespace of the Instance. Default: $POD_NAMESPACE, then the in-cluster
	// service account's namespace, then "default".
	Namespace string
	// PodName and PodUID identify the pod this service runs in. Default: $POD_NAME
	// and $POD_UID. With both, the Instance gets an ownerReference to the pod.
	PodName string
	PodUID  types.UID
	// InstanceName overrides the derived Instance name (see InstanceName).
	InstanceName string

	// AppProtocol is http (the default) or h2c.
	AppProtocol slugwayv1.AppProtocol
	// HealthCheck of the Instance. The zero value is the CRD's default: HTTP GET
	// URL + /healthz every 10s. With Type heartbeat, the SDK renews
	// status.lastHeartbeat itself; see Heartbeat.
	HealthCheck slugwayv1.HealthCheck
	// HeartbeatInterval is how often a heartbeat-mode Instance is renewed, before
	// jitter of ±10%. Default: a third of the TTL (less for TTLs under 4s, since
	// lastHeartbeat is stored to the second).
	HeartbeatInterval time.Duration
	// Resync is how often a probe-mode registration checks that its Instance still
	// exists and re-creates it if it was deleted (say, expired while unreachable).
	// Default 30s; negative disables it.
	Resync time.Duration

	// RetryInitialDelay and RetryMaxDelay bound the exponential backoff between
	// retries of transient failures (each delay plus up to 10% jitter). Defaults
	// 200ms and 10s.
	RetryInitialDelay, RetryMaxDelay time.Duration

	// Config are the credentials. Default: controller-runtime's config.GetConfig(),
	// which honours --kubeconfig, $KUBECONFIG, the in-cluster service account and
	// ~/.kube/config, in that order.
	Config *rest.Config
	// Logger receives retries, renewals that failed and re-registrations. Default: discard.
	Logger logr.Logger
}

// Heartbeat returns a heartbeat-mode health check: the Instance is Healthy while the
// SDK renews its status.lastHeartbeat, and Unreachable once that is older than ttl
// (at least 1s). Use it when the controller cannot reach the service to probe it.
func Heartbeat(ttl time.Duration) slugwayv1.HealthCheck {
	return slugwayv1.HealthCheck{Type: slugwayv1.HealthCheckHeartbeat, TTL: &metav1.Duration{Duration: ttl}}
}

// SlugOwnedError says that the slug is claimed by another identity.
type SlugOwnedError struct {
	Slug  string
	Owner string // the owner's Kubernetes username; empty when the slug has no owner
	User  string // who we are
}

func (e *SlugOwnedError) Error() string {
	return fmt.Sprintf("slug %q is owned by %q, not by %q: pick another slug, or ask the owner or a slugway admin to transfer spec.owner of serviceaccounts.slugway.io/%s",
		e.Slug, e.Owner, e.User, e.Slug)
}

// Registration is a live registration. Close it to deregister.
type Registration struct {
	c        client.Client
	log      logr.Logger
	slug     string
	user     string
	key      types.NamespacedName
	desired  *slugwayv1.Instance
	interval time.Duration // 0: no loop
	beat     bool          // heartbeat mode
	backoff  wait.Backoff  // the retry schedule; stepped on copies

	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// Slug is the claimed slug.
func (r *Registration) Slug() string { return r.slug }

// User is the Kubernetes username the registration acts as (and the slug's owner).
func (r *Registration) User() string { return r.user }

// Instance is the namespace and name of the registered Instance.
func (r *Registration) Instance() types.NamespacedName { return r.key }

// URL is the registered URL.
func (r *Registration) URL() string { return r.desired.Spec.URL }

// Register claims opts.Slug for the caller and registers opts.URL as an Instance of it.
// It returns once the Instance exists (and, in heartbeat mode, has its first heartbeat);
// from then on a goroutine keeps it registered until Close or Stop.
//
// Transient failures are retried with backoff until ctx ends: bound ctx if the caller
// must not wait for an unreachable apiserver. Permanent failures are returned at once:
// *SlugOwnedError when another identity owns the slug, and the apiserver's Forbidden or
// Invalid errors when the webhook or the schema refuses the Instance.
func Register(ctx context.Context, opts Options) (*Registration, error) {
	r, err := newRegistration(opts)
	if err != nil {
		return nil, err
	}
	if err := r.retry(ctx, "finding our identity with a SelfSubjectReview", func(ctx context.Context) (err error) {
		r.user, err = whoAmI(ctx, r.c)
		return err
	}); err != nil {
		return nil, err
	}
	if err := r.retry(ctx, "claiming the slug", func(ctx context.Context) error {
		return r.claim(ctx, opts.DisplayName)
	}); err != nil {
		return nil, err
	}
	if err := r.retry(ctx, "registering the instance", r.upsert); err != nil {
		return nil, err
	}
	if r.beat {
		if err := r.retry(ctx, "sending the first heartbeat", r.heartbeat); err != nil {
			return nil, err
		}
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan struct{})
	if r.interval > 0 {
		go r.keep(loopCtx)
	} else {
		close(r.done)
	}
	r.log.Info("registered", "slug", r.slug, "instance", r.key.String(), "url", r.desired.Spec.URL, "owner", r.user)
	return r, nil
}

// newRegistration fills the defaults and builds the client, without contacting the apiserver.
func newRegistration(opts Options) (*Registration, error) {
	if errs := validation.IsDNS1123Label(opts.Slug); len(errs) > 0 {
		return nil, fmt.Errorf("sdk: Options.Slug %q is not a valid slug (%s): use a lowercase DNS label such as \"skeleton-svc\"", opts.Slug, strings.Join(errs, "; "))
	}
	if opts.URL == "" {
		opts.URL = os.Getenv(EnvSelfURL)
	}
	if opts.URL == "" {
		return nil, fmt.Errorf("sdk: no URL to register: set Options.URL or $%s (e.g. http://$(POD_IP):9311 from the downward API)", EnvSelfURL)
	}
	opts.Namespace = firstNonEmpty(opts.Namespace, os.Getenv(EnvPodNamespace), readNamespaceFile(), "default")
	opts.PodName = firstNonEmpty(opts.PodName, os.Getenv(EnvPodName))
	opts.PodUID = types.UID(firstNonEmpty(string(opts.PodUID), os.Getenv(EnvPodUID)))
	name := opts.InstanceName
	if name == "" {
		name = InstanceName(opts.Slug, opts.PodName, opts.URL)
	}

	cfg := opts.Config
	if cfg == nil {
		var err error
		if cfg, err = config.GetConfig(); err != nil {
			return nil, fmt.Errorf("sdk: no Kubernetes credentials: run in a pod with a service account, or set $KUBECONFIG: %w", err)
		}
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "slugway-sdk/" + opts.Slug
	}
	c, err := kubeclient.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("sdk: building the Kubernetes client: %w", err)
	}

	inst := &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: opts.Namespace,
			Labels:    map[string]string{LabelSlug: opts.Slug, LabelManagedBy: ManagedBy},
		},
		Spec: slugwayv1.InstanceSpec{Slug: opts.Slug, URL: opts.URL, AppProtocol: opts.AppProtocol, HealthCheck: opts.HealthCheck},
	}
	if opts.PodName != "" && opts.PodUID != "" {
		inst.OwnerReferences = []metav1.OwnerReference{PodOwnerReference(opts.PodName, opts.PodUID)}
	}

	r := &Registration{
		c:       c,
		log:     opts.Logger,
		slug:    opts.Slug,
		key:     types.NamespacedName{Namespace: inst.Namespace, Name: inst.Name},
		desired: inst,
		beat:    opts.HealthCheck.Type == slugwayv1.HealthCheckHeartbeat,
		backoff: newBackoff(opts.RetryInitialDelay, opts.RetryMaxDelay),
	}
	if r.log.GetSink() == nil {
		r.log = logr.Discard()
	}
	switch {
	case r.beat && opts.HeartbeatInterval > 0:
		r.interval = opts.HeartbeatInterval
	case r.beat:
		r.interval = heartbeatInterval(opts.HealthCheck.TTLOrDefault())
	case opts.Resync == 0:
		r.interval = 30 * time.Second
	case opts.Resync > 0:
		r.interval = opts.Resync
	}
	return r, nil
}

// heartbeatInterval is a third of the TTL, but for short TTLs it leaves room for
// lastHeartbeat being stored to the second (up to 1s older than the beat): at most
// (ttl-1s)/2, and never under 200ms.
func heartbeatInterval(ttl time.Duration) time.Duration {
	return max(min(ttl/3, (ttl-time.Second)/2), 200*time.Millisecond)
}

// PodOwnerReference is the ownerReference that ties an Instance to its pod, so that
// the garbage collector deletes the Instance with the pod. It does not block the
// pod's deletion (that would need delete rights on pods).
func PodOwnerReference(podName string, uid types.UID) metav1.OwnerReference {
	f := false
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: podName, UID: uid, BlockOwnerDeletion: &f}
}

// InstanceName derives the Instance's name: "<slug>-<pod>" when the pod is known,
// else "<slug>-<first 10 hex digits of sha256 of the normalized URL>". Names longer
// than 63 characters are cut and end in a hash of the full name, so they stay unique.
func InstanceName(slug, podName, rawURL string) string {
	var name string
	if podName != "" {
		name = slug + "-" + podName
	} else {
		name = slug + "-" + shortHash(registry.NormalizeURL(rawURL), 10)
	}
	if len(name) <= validation.DNS1123LabelMaxLength {
		return name
	}
	prefix := strings.TrimRight(name[:validation.DNS1123LabelMaxLength-9], "-.")
	return prefix + "-" + shortHash(name, 8)
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func readNamespaceFile() string {
	b, err := os.ReadFile(inClusterNamespaceFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// whoAmI asks the apiserver for our own username: the identity the ownership webhook sees.
func whoAmI(ctx context.Context, c client.Client) (string, error) {
	user, err := kubeclient.WhoAmI(ctx, c)
	if errors.Is(err, kubeclient.ErrNoUsername) {
		return "", permanent(err)
	}
	return user, err
}

// claim gets the slug's ServiceAccount, creating it (owned by us) when absent, and
// fails with *SlugOwnedError when someone else owns it.
func (r *Registration) claim(ctx context.Context, displayName string) error {
	var sa slugwayv1.ServiceAccount
	err := r.c.Get(ctx, types.NamespacedName{Name: r.slug}, &sa)
	if apierrors.IsNotFound(err) {
		sa = slugwayv1.ServiceAccount{
			ObjectMeta: metav1.ObjectMeta{Name: r.slug},
			Spec:       slugwayv1.ServiceAccountSpec{DisplayName: displayName, Owner: r.user},
		}
		err = r.c.Create(ctx, &sa)
		if apierrors.IsAlreadyExists(err) {
			// Someone claimed it between our get and create: see who.
			err = r.c.Get(ctx, types.NamespacedName{Name: r.slug}, &sa)
		} else if err == nil {
			r.log.Info("claimed slug", "slug", r.slug, "owner", sa.Spec.Owner)
		}
	}
	if err != nil {
		return err
	}
	if !sa.DeletionTimestamp.IsZero() {
		return fmt.Errorf("slug %q is being deleted; will claim it again once it is gone", r.slug) // transient: retried
	}
	if sa.Spec.Owner != r.user {
		return permanent(&SlugOwnedError{Slug: r.slug, Owner: sa.Spec.Owner, User: r.user})
	}
	return nil
}

// upsert creates the Instance, or updates the existing one to the desired spec,
// labels and ownerReference (controllerutil.CreateOrUpdate: an update that changes
// nothing writes nothing). An Instance of that name serving another slug is a
// permanent error; one being deleted is retried until it is gone.
func (r *Registration) upsert(ctx context.Context) error {
	inst := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Namespace: r.key.Namespace, Name: r.key.Name}}
	op, err := controllerutil.CreateOrUpdate(ctx, r.c, inst, func() error {
		if inst.ResourceVersion != "" { // it exists
			if inst.Spec.Slug != r.slug {
				return permanent(fmt.Errorf("instance %s already exists and serves slug %q, not %q: set Options.InstanceName to another name, or delete that instance", r.key, inst.Spec.Slug, r.slug))
			}
			if !inst.DeletionTimestamp.IsZero() {
				return fmt.Errorf("instance %s is being deleted; will re-create it once it is gone", r.key)
			}
		}
		inst.Spec = r.desired.Spec
		if inst.Labels == nil {
			inst.Labels = map[string]string{}
		}
		maps.Copy(inst.Labels, r.desired.Labels)
		if len(r.desired.OwnerReferences) > 0 {
			inst.OwnerReferences = withOwner(inst.OwnerReferences, r.desired.OwnerReferences[0])
		}
		return nil
	})
	if op == controllerutil.OperationResultCreated {
		r.log.Info("created instance", "instance", r.key.String())
	}
	return err // AlreadyExists (a create race) is retried: the next try updates
}

// withOwner replaces any Pod ownerReference with ref and keeps the others.
func withOwner(refs []metav1.OwnerReference, ref metav1.OwnerReference) []metav1.OwnerReference {
	out := []metav1.OwnerReference{ref}
	for _, o := range refs {
		if !(o.APIVersion == "v1" && o.Kind == "Pod") {
			out = append(out, o)
		}
	}
	return out
}

// heartbeat renews status.lastHeartbeat (see kubeclient.PatchHeartbeat: no read, no conflict).
func (r *Registration) heartbeat(ctx context.Context) error {
	return kubeclient.PatchHeartbeat(ctx, r.c, r.key, time.Now())
}

// keep renews the heartbeat (or checks the Instance still exists) every interval,
// with jitter, re-creating the Instance when it disappeared. Failures are logged and
// retried sooner, with backoff; nothing here ends the service.
func (r *Registration) keep(ctx context.Context) {
	defer close(r.done)
	fails, b := 0, r.backoff
	delay := jitter(r.interval)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		err := r.tick(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			fails, b = 0, r.backoff
			delay = jitter(r.interval)
			continue
		}
		fails++
		r.log.Error(err, "keeping the registration alive failed; will retry", "instance", r.key.String(), "attempt", fails)
		delay = min(b.Step(), jitter(r.interval))
	}
}

func (r *Registration) tick(ctx context.Context) error {
	var err error
	if r.beat {
		err = r.heartbeat(ctx)
	} else {
		err = r.c.Get(ctx, r.key, &slugwayv1.Instance{})
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	r.log.Info("instance is gone; registering it again", "instance", r.key.String())
	if err := r.upsert(ctx); err != nil {
		return err
	}
	if r.beat {
		return r.heartbeat(ctx)
	}
	return nil
}

// Stop ends the heartbeat (or resync) without deleting the Instance: it stays until
// Close, its TTL runs out (heartbeat mode), its probes fail, or its pod is deleted.
// It is what a crash looks like to slugway. Stop may be called more than once.
func (r *Registration) Stop() {
	r.stopOnce.Do(func() {
		r.cancel()
		<-r.done
	})
}

// Close stops the heartbeat and deletes the Instance (graceful deregistration),
// retrying transient failures until ctx ends. The slug stays claimed.
func (r *Registration) Close(ctx context.Context) error {
	r.Stop()
	err := r.retry(ctx, "deleting the instance", func(ctx context.Context) error {
		obj := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Namespace: r.key.Namespace, Name: r.key.Name}}
		return client.IgnoreNotFound(r.c.Delete(ctx, obj))
	})
	if err == nil {
		r.log.Info("deregistered", "instance", r.key.String())
	}
	return err
}

// jitter spreads d by ±10% so that many instances do not renew in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}
