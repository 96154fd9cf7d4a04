package main

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/slugway/slugway/manager"
	"github.com/slugway/slugway/registry"
	"github.com/slugway/slugway/tracing"
)

// runController is "slugway controller": flags in, manager.New, run until signalled.
func runController(args []string) error {
	fs := flag.NewFlagSet("slugway controller", flag.ContinueOnError)
	o := manager.Options{}
	var adminGroups, reservedSlugs, controllerUsers string
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8081", "address of the Prometheus /metrics endpoint (\"0\" disables it)")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8082", "address of /healthz and /readyz")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "elect a leader, so that only one replica probes and writes status")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the leader-election Lease (default: the pod's namespace; required out of cluster)")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a standby waits after the last renewal before taking over")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it gives up (and exits, to be restarted)")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try to acquire or renew the lease")
	fs.StringVar(&o.WebhookHost, "webhook-host", "", "address the admission webhook server listens on (default: all)")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "port of the admission webhook server")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", "", "directory holding tls.crt and tls.key for the webhook server")
	fs.BoolVar(&o.DisableWebhooks, "disable-webhooks", false, "do not serve the admission webhooks (ownership is then not enforced)")
	fs.StringVar(&adminGroups, "admin-groups", strings.Join(registry.DefaultAdminGroups, ","), "comma-separated groups whose members may change any slug")
	fs.StringVar(&reservedSlugs, "reserved-slugs", strings.Join(registry.DefaultReservedSlugs, ","), "comma-separated slugs nobody may claim")
	fs.StringVar(&controllerUsers, "controller-users", "", "comma-separated extra usernames treated as the controller (its own identity is found with a SelfSubjectReview)")
	fs.DurationVar(&o.HeartbeatRefresh, "heartbeat-refresh", 30*time.Second, "how stale status.lastHeartbeat may get before a successful probe rewrites it (the write budget)")
	fs.Float64Var(&o.MaxHeartbeatWrites, "max-heartbeat-writes", manager.DefaultMaxHeartbeatWrites, "lastHeartbeat refreshes per second across all instances at most: with more instances than this × --heartbeat-refresh, the refresh interval stretches to instances ÷ this (-1: no bound)")
	fs.DurationVar(&o.ExpireAfter, "expire-unreachable-after", 0, "delete instances Unreachable for this long (0: never, the default)")
	fs.DurationVar(&o.URLHoldGrace, "url-hold-grace", manager.DefaultURLHoldGrace, "an instance Unreachable this long stops holding its URL: another slug's instance with the same URL may then register it and becomes its holder (the old one is kept, marked URLReleased; 0: never)")
	fs.IntVar(&o.ProbeConcurrency, "probe-concurrency", 64, "maximum health probes in flight")
	fs.IntVar(&o.MaxInstancesPerSlug, "max-instances-per-slug", manager.DefaultMaxInstancesPerSlug, "Instances one slug may have; more are refused at admission (bounds what one owner can put in the controller's and proxy's caches; negative: no limit)")
	fs.IntVar(&o.Reconcilers, "max-concurrent-reconciles", 4, "Instance reconciles run in parallel")
	fs.IntVar(&o.HeartbeatWriters, "heartbeat-writers", 8, "lastHeartbeat refreshes written in parallel (each a ~25ms apiserver round trip)")
	com := bindCommon(fs,
		"comma-separated CIDRs instance URLs may not reach, checked at admission and at every probe's dial after DNS resolution (the SSRF guard)",
		"let instance URLs reach loopback addresses (127.0.0.0/8, ::1); for local development only")
	var shutdownDelay time.Duration
	fs.DurationVar(&shutdownDelay, "shutdown-delay", 0, "on SIGTERM, keep serving the webhooks (and leading) this long with /readyz failing before stopping, so that the apiserver stops calling this pod before its webhook server closes")
	var traceOpts tracing.Options
	tracing.BindFlags(fs, &traceOpts)
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.AdminGroups, o.ReservedSlugs, o.ControllerUsers = splitList(adminGroups), splitList(reservedSlugs), splitList(controllerUsers)
	if o.URLHoldGrace <= 0 {
		o.URLHoldGrace = -1 // the flag's 0 is "never"; manager.Options' 0 is the default
	}
	guard, cfg, err := com.setup()
	if err != nil {
		return err
	}
	o.CheckURL, o.Dial = guard.CheckURL, guard.DialContext

	// The first SIGTERM fails /readyz at once and stops the manager shutdownDelay later
	// (a second signal exits at once). In that window the webhook Service still sends
	// this pod admission requests: a webhook server that closed at once refused them, and
	// the apiserver refused the writes ("failed calling webhook ... connection refused").
	signalled := ctrl.SetupSignalHandler()
	ctx, stop := context.WithCancel(context.WithoutCancel(signalled))
	defer stop()
	go func() {
		<-signalled.Done()
		ctrl.Log.WithName("setup").Info("signalled: /readyz fails now, the manager stops after the shutdown delay", "delay", shutdownDelay)
		select {
		case <-time.After(shutdownDelay):
		case <-ctx.Done():
		}
		stop()
	}()
	traceOpts.ServiceName = "slugway-controller"
	tr, err := tracing.New(ctx, traceOpts, "github.com/slugway/slugway/controller")
	if err != nil {
		return err
	}
	defer func() { _ = tr.Shutdown(context.Background()) }() // exports the spans still buffered
	tr.SetGlobal()                                           // probes' spans (package health)
	cfg.Wrap(tr.StatusWrites)                                // status writes' spans
	mgr, err := manager.New(ctx, cfg, o)
	if err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("shutdown", func(*http.Request) error {
		if signalled.Err() != nil {
			return errors.New("shutting down")
		}
		return nil
	}); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("starting controller", "version", version, "webhooks", !o.DisableWebhooks, "heartbeatRefresh", o.HeartbeatRefresh, "maxHeartbeatWrites", o.MaxHeartbeatWrites)
	return mgr.Start(ctx)
}
