// Package manager assembles the slugway controller: the controller-runtime manager,
// both reconcilers, the health Monitor and the admission webhooks. The binary and
// the tests build it the same way, so tests run exactly what ships.
package manager

import (
	"context"
	"fmt"
	"net"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmanager "sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/slugway/slugway/controllers"
	"github.com/slugway/slugway/health"
	"github.com/slugway/slugway/kubeclient"
	"github.com/slugway/slugway/registry"
	"github.com/slugway/slugway/webhooks"
)

// Options configure the controller. The zero value of each field means its documented default.
type Options struct {
	MetricsAddr, ProbeAddr  string
	LeaderElect             bool
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod of leader election; all three are used
	// when LeaseDuration is set, otherwise controller-runtime's defaults (15s/10s/2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	WebhookHost     string
	WebhookPort     int
	WebhookCertDir  string
	DisableWebhooks bool

	AdminGroups     []string
	ReservedSlugs   []string
	ControllerUsers []string
	// CheckURL vets instance URLs at admission (the SSRF guard); nil allows all.
	CheckURL func(ctx context.Context, rawURL string) error
	// Dial is used by health probes; nil means a plain dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	HeartbeatRefresh time.Duration
	// MaxHeartbeatWrites bounds lastHeartbeat refreshes per second across all
	// instances (the refresh interval stretches to fit). 0 means 50; negative, no bound.
	MaxHeartbeatWrites float64
	ExpireAfter        time.Duration
	// URLHoldGrace: an instance Unreachable this long yields its URL to another slug's
	// instance (registry.URLRule), at admission and in the controller. 0 means
	// DefaultURLHoldGrace; negative, never.
	URLHoldGrace time.Duration
	// SkipNameValidation lets one process build several managers (tests do).
	SkipNameValidation bool
	ProbeConcurrency   int
	Reconcilers        int
	// HeartbeatWriters patch lastHeartbeat refreshes in parallel, off the reconcile queue.
	HeartbeatWriters int
	// MaxInstancesPerSlug refuses, at admission, an Instance beyond this many for one
	// slug. 0 means DefaultMaxInstancesPerSlug; negative, no limit.
	MaxInstancesPerSlug int
}

// DefaultMaxInstancesPerSlug is the default of Options.MaxInstancesPerSlug.
const DefaultMaxInstancesPerSlug = 1000

// DefaultURLHoldGrace is the default of --url-hold-grace: long enough that a restart
// or a short outage never hands a URL over, short enough that a pod IP reused by the
// scheduler (minutes after the pod died, at the earliest) is not blocked for long.
const DefaultURLHoldGrace = 5 * time.Minute

// DefaultMaxHeartbeatWrites is the default bound on lastHeartbeat refreshes per
// second: up to 1,500 instances refresh every 30s, 10,000 every 200s.
const DefaultMaxHeartbeatWrites = 50

// New builds the manager with both controllers, the health Monitor and the webhooks.
func New(ctx context.Context, cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if o.LeaderElect && o.LeaderElectionNamespace == "" {
		if _, err := rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("leader election needs a namespace out of cluster: pass --leader-election-namespace, or --leader-elect=false")
		}
	}
	if o.HeartbeatRefresh <= 0 {
		o.HeartbeatRefresh = 30 * time.Second
	}
	switch {
	case o.URLHoldGrace == 0:
		o.URLHoldGrace = DefaultURLHoldGrace
	case o.URLHoldGrace < 0:
		o.URLHoldGrace = 0 // the reconciler's and webhooks' "never"
	}
	mopts := ctrl.Options{
		Scheme:                        kubeclient.Scheme(),
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.ProbeAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              "controller.slugway.io",
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		WebhookServer:                 webhook.NewServer(webhook.Options{Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.WebhookCertDir}),
		Controller:                    config.Controller{SkipNameValidation: &o.SkipNameValidation},
		// Only the fields the reconcilers and webhooks read: owners' annotations and labels do not fill the cache.
		Cache: cache.Options{DefaultTransform: registry.TrimForController},
	}
	if o.LeaseDuration > 0 {
		mopts.LeaseDuration, mopts.RenewDeadline, mopts.RetryPeriod = &o.LeaseDuration, &o.RenewDeadline, &o.RetryPeriod
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := registry.AddIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}

	ir := &controllers.InstanceReconciler{
		Client:       mgr.GetClient(),
		Recorder:     mgr.GetEventRecorder("slugway-controller"),
		ExpireAfter:  o.ExpireAfter,
		URLHoldGrace: o.URLHoldGrace,
	}
	ir.Monitor = health.NewMonitor[types.NamespacedName](health.NewProber(o.Dial), max(o.ProbeConcurrency, 1), o.HeartbeatRefresh, ir.NotifyFunc(ctx))
	switch {
	case o.MaxHeartbeatWrites == 0:
		ir.Monitor.MaxRefreshRate = DefaultMaxHeartbeatWrites
	case o.MaxHeartbeatWrites > 0:
		ir.Monitor.MaxRefreshRate = o.MaxHeartbeatWrites
	}
	hw := controllers.NewHeartbeatWriter(mgr.GetClient(), o.HeartbeatWriters)
	ir.Monitor.Refreshed = hw.Enqueue
	for _, r := range []ctrlmanager.Runnable{ir.Monitor, hw} {
		if err := mgr.Add(r); err != nil {
			return nil, err
		}
	}
	// Heartbeats count from no earlier than when this replica began to lead: while the
	// apiserver (or the previous leader) was away, services could not renew them.
	if err := mgr.Add(ctrlmanager.RunnableFunc(func(ctx context.Context) error {
		ir.LeadingSince(time.Now())
		<-ctx.Done()
		return nil
	})); err != nil {
		return nil, err
	}
	if err := ir.SetupWithManager(mgr, max(o.Reconcilers, 1)); err != nil {
		return nil, fmt.Errorf("setting up the instance controller: %w", err)
	}
	sr := &controllers.ServiceAccountReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("slugway-controller")}
	if err := sr.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the serviceaccount controller: %w", err)
	}

	if !o.DisableWebhooks {
		self, err := whoAmI(ctx, cfg)
		if err != nil {
			return nil, err
		}
		webhooks.Register(mgr, webhooks.Config{
			Access:        registry.Access{AdminGroups: o.AdminGroups, Controllers: append(o.ControllerUsers, self)},
			ReservedSlugs: o.ReservedSlugs,
			Deleters:      webhooks.DefaultDeleters,
			CheckURL:      o.CheckURL,
			MaxInstances:  maxInstances(o.MaxInstancesPerSlug),
			URLHoldGrace:  o.URLHoldGrace,
		})
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// whoAmI is the controller's own username, which the webhooks treat as privileged.
func whoAmI(ctx context.Context, cfg *rest.Config) (string, error) {
	c, err := kubeclient.New(cfg)
	if err != nil {
		return "", err
	}
	user, err := kubeclient.WhoAmI(ctx, c)
	if err != nil {
		return "", fmt.Errorf("finding our own identity with a SelfSubjectReview: %w", err)
	}
	return user, nil
}

func maxInstances(n int) int {
	switch {
	case n == 0:
		return DefaultMaxInstancesPerSlug
	case n < 0:
		return 0
	}
	return n
}
