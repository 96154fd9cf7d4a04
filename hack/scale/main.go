// Command scale measures slugway's control plane at scale (issue 7): it starts a
// real kube-apiserver and etcd (with the admission webhooks), runs the real
// `slugway controller` and `slugway proxy` binaries as processes, serves every
// instance from a few real origin servers on many loopback ports, creates
// -slugs ServiceAccounts and -instances Instances, and measures
//
//   - the time until every Instance is Healthy;
//   - controller and proxy RSS;
//   - health probes per second (counted at the origins);
//   - status writes per minute in steady state (watched MODIFIED events);
//   - the controller's reconcile queue depth and latency (its /metrics);
//   - the apiserver request rate (the apiserver's own /metrics);
//   - route propagation: from an Instance status write to the proxy routing by it,
//     quiet and under a background of heartbeat writes.
//
// It writes one JSON result (see result.go) that hack/plot and the tables in
// docs/benchmarks.md are made from. Every phase is bounded; the whole run stops
// by itself within -timeout. hack/scale.sh runs the series; see docs/scale.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	admissionv1 "k8s.io/api/admissionregistration/v1"

	slugwayv1 "github.com/slugway/slugway/api/v1alpha1"
	"github.com/slugway/slugway/hack/scale/scaleresult"
	"github.com/slugway/slugway/internal/proc"
	"github.com/slugway/slugway/internal/testenv"
	"github.com/slugway/slugway/kubeclient"
)

type config struct {
	Instances, Slugs, Ports int
	HeartbeatRefresh        time.Duration
	Window, Settle          time.Duration
	HealthyTimeout          time.Duration
	Timeout                 time.Duration
	Webhooks                bool
	Flips                   int
	ChurnRate               float64
	ProfileSeconds          int
	Workers                 int
	Bin, Out, WorkDir       string
	ControllerArgs          string
	ContinueUnhealthy       bool
}

const (
	namespace  = "scale"
	probeSlug  = "zz-propagation"
	probeInst  = "zz-propagation-0"
	probeRoute = "/" + probeSlug + "/p"
)

func main() {
	var c config
	flag.IntVar(&c.Instances, "instances", 1000, "Instances in total (one of them is the propagation probe's)")
	flag.IntVar(&c.Slugs, "slugs", 0, "ServiceAccounts (slugs) the instances spread over (default: instances/10)")
	flag.IntVar(&c.Ports, "ports", 40, "loopback ports the origin servers listen on")
	flag.DurationVar(&c.HeartbeatRefresh, "heartbeat-refresh", 30*time.Second, "the controller's --heartbeat-refresh")
	flag.DurationVar(&c.Window, "window", 60*time.Second, "steady-state measurement window (0 skips the steady-state phase)")
	flag.DurationVar(&c.Settle, "settle", 20*time.Second, "wait after all are Healthy before the window opens")
	flag.DurationVar(&c.HealthyTimeout, "healthy-timeout", 8*time.Minute, "give up waiting for all Healthy after this long (the result records how many were)")
	flag.DurationVar(&c.Timeout, "timeout", 15*time.Minute, "bound on the whole run")
	flag.BoolVar(&c.Webhooks, "webhooks", true, "install the admission webhooks (served by the controller)")
	flag.IntVar(&c.Flips, "flips", 60, "status changes per route propagation measurement (0 skips propagation)")
	flag.Float64Var(&c.ChurnRate, "churn-rate", -1, "heartbeat writes per second in the background of the second propagation measurement (-1: instances/30, the default write budget; 0: skip)")
	flag.IntVar(&c.ProfileSeconds, "profile-seconds", 15, "CPU profile of the proxy during the churn measurement (0: none)")
	flag.IntVar(&c.Workers, "workers", 32, "parallel creates")
	flag.StringVar(&c.ControllerArgs, "controller-args", "", "extra space-separated flags for `slugway controller` (e.g. --max-concurrent-reconciles=16)")
	flag.BoolVar(&c.ContinueUnhealthy, "continue-unhealthy", true, "when not all instances are Healthy within -healthy-timeout, measure the steady state and propagation anyway (the result records how many were)")
	flag.StringVar(&c.Bin, "bin", "", "the slugway binary (default: build bin/slugway)")
	flag.StringVar(&c.Out, "out", "", "write the JSON result here (default: stdout only)")
	flag.StringVar(&c.WorkDir, "workdir", "", "logs and profiles (default: a temporary directory)")
	flag.Parse()
	if c.Slugs == 0 && c.Instances > 1 {
		c.Slugs = max((c.Instances-1)/10, 1)
	}
	if c.Instances < 1 || c.Ports < 1 || (c.Instances > 1 && c.Slugs < 1) {
		fail(errors.New("-instances and -ports must be at least 1, and -slugs too with more than one instance"))
	}
	if c.ChurnRate < 0 {
		c.ChurnRate = float64(c.Instances) / 30
	}
	res, err := run(c)
	if res != nil {
		b, _ := json.MarshalIndent(res, "", "  ")
		if c.Out != "" {
			if werr := os.WriteFile(c.Out, append(b, '\n'), 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "scale: writing the result:", werr)
			}
		}
		fmt.Println(string(b))
		fmt.Println(res.Markdown())
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "scale: %v\n", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// run does the whole measurement, one phase after the other: start, create, wait,
// steady state, propagation. It returns what it measured even on error.
func run(c config) (*result, error) {
	// Ctrl-C or SIGTERM ends the run early but still stops the control plane and the processes.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sigCtx, c.Timeout)
	defer cancel()
	ctrl.SetLogger(logr.Discard())
	if err := prepare(&c); err != nil {
		return nil, err
	}
	r := &scaleRun{c: c, res: newResult(c, os.Args)}
	defer r.stop()
	if err := r.start(ctx); err != nil {
		return r.res, err
	}
	if err := r.create(ctx); err != nil {
		return r.res, err
	}
	if err := r.wait(ctx); err != nil {
		return r.res, err
	}
	if err := r.steadyState(ctx); err != nil {
		return r.res, err
	}
	if err := r.propagation(ctx); err != nil {
		return r.res, err
	}
	r.res.ProxyRSSEndMiB, _ = rssMiB(r.proxy.Pid())
	return r.res, nil
}

// prepare makes the work directory and builds the binary, unless given.
func prepare(c *config) error {
	if c.WorkDir == "" {
		d, err := os.MkdirTemp("", "slugway-scale-")
		if err != nil {
			return err
		}
		c.WorkDir = d
	}
	if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
		return err
	}
	if c.Bin == "" {
		root := testenv.Root()
		c.Bin = filepath.Join(root, "bin", "slugway")
		logf("building %s", c.Bin)
		b := exec.Command("go", "build", "-o", c.Bin, ".")
		b.Dir, b.Stdout, b.Stderr = root, os.Stderr, os.Stderr
		b.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := b.Run(); err != nil {
			return fmt.Errorf("building slugway: %w", err)
		}
	}
	return nil
}

// scaleRun is one measurement: what start brings up, the phases use and stop ends.
type scaleRun struct {
	c   config
	res *result

	env                                *testenv.Env
	admin                              *rest.Config // no client-side throttling
	cl                                 client.Client
	apiHTTP                            *http.Client
	orig                               *origins
	controller, proxy                  *proc.Proc
	metricsAddr, proxyAddr, proxyAdmin string
	pids                               map[string]int // whose CPU time is measured
	tr                                 *tracker
	t0, created                        time.Time // the first and the last create

	stopSampling func() // stops the sampler and keeps its samples; idempotent
	stops        []func()
}

// stop ends what start began, last first.
func (r *scaleRun) stop() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
}

func (r *scaleRun) scrapeAPI() metrics {
	return scrape(r.apiHTTP, strings.TrimSuffix(r.admin.Host, "/")+"/metrics")
}
func (r *scaleRun) scrapeCtl() metrics {
	return scrape(http.DefaultClient, "http://"+r.metricsAddr+"/metrics")
}
func (r *scaleRun) scrapeProxy() metrics {
	return scrape(http.DefaultClient, "http://"+r.proxyAdmin+"/metrics")
}

// cpu is the CPU seconds each measured process has used so far.
func (r *scaleRun) cpu() map[string]float64 {
	out := map[string]float64{}
	for name, pid := range r.pids {
		if st, err := readStat(pid); err == nil {
			out[name] = st.CPUSecond
		}
	}
	return out
}

// start brings up the control plane, the origins, the controller and the proxy (as
// processes, like a deployment runs them), the tracker and the sampler.
func (r *scaleRun) start(ctx context.Context) error {
	c, res := r.c, r.res
	logf("starting kube-apiserver and etcd (webhooks=%v); logs and profiles in %s", c.Webhooks, c.WorkDir)
	env, err := testenv.StartWith(testenv.Options{Webhooks: c.Webhooks, Quiet: true})
	if err != nil {
		return err
	}
	r.env = env
	r.stops = append(r.stops, func() { _ = env.Stop() })
	kubeconfig := filepath.Join(c.WorkDir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return err
	}
	r.admin = rest.CopyConfig(env.Config)
	r.admin.QPS, r.admin.Burst = -1, 0 // no client-side throttling: the harness should not be the bottleneck
	if r.cl, err = kubeclient.New(r.admin); err != nil {
		return err
	}
	if r.apiHTTP, err = rest.HTTPClientFor(r.admin); err != nil {
		return err
	}
	if r.orig, err = startOrigins(c.Ports); err != nil {
		return err
	}
	r.stops = append(r.stops, r.orig.close)

	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	healthAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	r.metricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	r.proxyAddr, r.proxyAdmin = fmt.Sprintf("127.0.0.1:%d", ports[2]), fmt.Sprintf("127.0.0.1:%d", ports[3])
	kenv := []string{"KUBECONFIG=" + kubeconfig}
	cargs := []string{"controller",
		"--leader-election-namespace", "default", "--allow-loopback",
		"--metrics-bind-address", r.metricsAddr, "--health-probe-bind-address", healthAddr,
		"--heartbeat-refresh", c.HeartbeatRefresh.String(),
	}
	if c.Webhooks {
		w := env.WebhookInstallOptions
		cargs = append(cargs, "--webhook-host", w.LocalServingHost, "--webhook-port", fmt.Sprint(w.LocalServingPort), "--webhook-cert-dir", w.LocalServingCertDir)
	} else {
		cargs = append(cargs, "--disable-webhooks")
	}
	cargs = append(cargs, strings.Fields(c.ControllerArgs)...)
	res.ControllerArgs = strings.Join(cargs, " ")
	if r.controller, err = proc.Start("controller", c.WorkDir, kenv, nil, c.Bin, cargs...); err != nil {
		return err
	}
	r.stops = append(r.stops, func() { _ = r.controller.Stop(10 * time.Second) })
	pargs := []string{"proxy", "--listen", r.proxyAddr, "--admin-listen", r.proxyAdmin, "--pprof"}
	if supportsFlag(c.Bin, "proxy", "allow-loopback") {
		pargs = append(pargs, "--allow-loopback")
	}
	res.ProxyArgs = strings.Join(pargs, " ")
	if r.proxy, err = proc.Start("proxy", c.WorkDir, kenv, nil, c.Bin, pargs...); err != nil {
		return err
	}
	r.stops = append(r.stops, func() { _ = r.proxy.Stop(10 * time.Second) })
	for _, w := range []struct {
		p   *proc.Proc
		url string
	}{{r.controller, "http://" + healthAddr + "/readyz"}, {r.proxy, "http://" + r.proxyAdmin + "/readyz"}} {
		if err := waitOK(ctx, w.p, w.url, 60*time.Second); err != nil {
			return err
		}
	}
	logf("controller (pid %d) and proxy (pid %d) are ready", r.controller.Pid(), r.proxy.Pid())

	r.pids = map[string]int{"controller": r.controller.Pid(), "proxy": r.proxy.Pid()}
	for _, comm := range []string{"kube-apiserver", "etcd"} {
		if p := childrenByComm(os.Getpid(), comm); len(p) == 1 {
			r.pids[comm] = p[0]
		}
	}
	r.pids["harness"] = os.Getpid()

	// Watch everything the way an observer of the apiserver would, to count writes and Healthy instances.
	if r.tr, err = startTracker(ctx, r.admin); err != nil {
		return err
	}
	r.startSampler(ctx)
	return nil
}

// startSampler records RSS (peak and current) and queue depth (peak) every second
// until stopSampling, which stores them in the result.
func (r *scaleRun) startSampler(ctx context.Context) {
	var smu sync.Mutex
	var samples []point
	peak := map[string]float64{}
	sampleDone := make(chan struct{})
	sctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			p := point{T: time.Since(start).Seconds(), Healthy: r.tr.healthyCount()}
			p.ControllerRSS, _ = rssMiB(r.controller.Pid())
			p.ProxyRSS, _ = rssMiB(r.proxy.Pid())
			if m := r.scrapeCtl(); m != nil {
				p.QueueDepth = m.sum("workqueue_depth", map[string]string{"name": "instance"})
			}
			smu.Lock()
			samples = append(samples, p)
			peak["controller"] = max(peak["controller"], p.ControllerRSS)
			peak["proxy"] = max(peak["proxy"], p.ProxyRSS)
			peak["depth"] = max(peak["depth"], p.QueueDepth)
			smu.Unlock()
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	r.stopSampling = func() {
		once.Do(func() {
			cancel()
			<-sampleDone
			smu.Lock()
			r.res.Samples = samples
			r.res.ControllerRSSPeakMiB, r.res.ProxyRSSPeakMiB, r.res.QueueDepthPeak = peak["controller"], peak["proxy"], peak["depth"]
			smu.Unlock()
		})
	}
	r.stops = append(r.stops, r.stopSampling)
}

// create makes the namespace, the slugs and the instances, as fast as the apiserver takes them.
func (r *scaleRun) create(ctx context.Context) error {
	c, res := r.c, r.res
	if err := r.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return err
	}
	r.t0 = time.Now()
	if err := createAll(ctx, r.cl, c, r.orig.Ports); err != nil {
		return err
	}
	r.created = time.Now()
	res.CreateSeconds = r.created.Sub(r.t0).Seconds()
	res.CreatesPerSecond = float64(c.Instances+c.Slugs+1) / res.CreateSeconds
	logf("created %d slugs and %d instances in %.1fs (%.0f objects/s); waiting for all Healthy", c.Slugs+1, c.Instances, res.CreateSeconds, res.CreatesPerSecond)
	return nil
}

// wait waits until every instance is Healthy, and measures the ramp from the first
// create. With ContinueUnhealthy, a timeout is recorded as a gap and the run goes on.
func (r *scaleRun) wait(ctx context.Context) error {
	c, res := r.c, r.res
	ctl0, api0, cpu0 := r.scrapeCtl(), r.scrapeAPI(), r.cpu()
	healthy, herr := r.tr.waitHealthy(ctx, c.Instances, c.HealthyTimeout, func(n int) {
		logf("  %d/%d Healthy after %.0fs", n, c.Instances, time.Since(r.t0).Seconds())
	})
	res.Healthy = healthy
	res.TimeToHealthySeconds = time.Since(r.t0).Seconds()
	res.HealthyAfterCreateSeconds = time.Since(r.created).Seconds()
	ctl1, api1, cpu1 := r.scrapeCtl(), r.scrapeAPI(), r.cpu()
	res.Ramp = measurePhase(ctl0, ctl1, api0, api1, cpu0, cpu1, res.TimeToHealthySeconds)
	if herr != nil {
		herr = fmt.Errorf("%w (%d of %d Healthy); see %s", herr, healthy, c.Instances, c.WorkDir)
		if !c.ContinueUnhealthy || ctx.Err() != nil {
			return herr
		}
		res.Gap = herr.Error()
		logf("%v; measuring the rest anyway", herr)
	} else {
		logf("all %d Healthy %.1fs after the first create (%.1fs after the last)", c.Instances, res.TimeToHealthySeconds, res.HealthyAfterCreateSeconds)
	}
	return nil
}

// steadyState measures c.Window of nothing changing, after c.Settle: writes, probes,
// apiserver requests, CPU and memory.
func (r *scaleRun) steadyState(ctx context.Context) error {
	c, res := r.c, r.res
	if c.Window <= 0 {
		return nil
	}
	logf("settling for %s, then measuring steady state for %s", c.Settle, c.Window)
	if !sleep(ctx, c.Settle) {
		return ctx.Err()
	}
	ctlA, apiA, cpuA := r.scrapeCtl(), r.scrapeAPI(), r.cpu()
	iw0, sw0, pr0 := r.tr.instWrites.Load(), r.tr.saWrites.Load(), r.orig.probes.Load()
	ws := time.Now()
	var pwg sync.WaitGroup
	if c.ProfileSeconds > 0 && c.Window >= time.Duration(c.ProfileSeconds)*time.Second {
		// Where the apiserver's time goes in steady state (its pprof is on by default; admin may read it).
		res.APIServerProfile = filepath.Join(c.WorkDir, fmt.Sprintf("apiserver-steady-%d.pprof", c.Instances))
		pwg.Go(func() {
			fetchProfileWith(ctx, r.apiHTTP, strings.TrimSuffix(r.admin.Host, "/"), c.ProfileSeconds, res.APIServerProfile)
		})
	}
	var rss, crss []float64
	for time.Since(ws) < c.Window {
		if !sleep(ctx, 2*time.Second) {
			return ctx.Err()
		}
		m, _ := rssMiB(r.proxy.Pid())
		rss = append(rss, m)
		m, _ = rssMiB(r.controller.Pid())
		crss = append(crss, m)
	}
	secs := time.Since(ws).Seconds()
	ctlB, apiB, cpuB := r.scrapeCtl(), r.scrapeAPI(), r.cpu()
	pwg.Wait()
	st := &steady{}
	st.Phase = measurePhase(ctlA, ctlB, apiA, apiB, cpuA, cpuB, secs)
	st.InstanceWritesPerMin = float64(r.tr.instWrites.Load()-iw0) / secs * 60
	st.ServiceAccountWritesPerMin = float64(r.tr.saWrites.Load()-sw0) / secs * 60
	st.WritesPerInstancePer30s = st.InstanceWritesPerMin / 2 / float64(c.Instances)
	st.ProbesPerSecond = float64(r.orig.probes.Load()-pr0) / secs
	st.ProxyRSSMiB, st.ControllerRSSMiB = slices.Max(rss), slices.Max(crss)
	st.StillHealthy = r.tr.healthyCount()
	res.Steady = st
	logf("steady state: %.0f instance writes/min (%.2f per instance per 30s), %.0f probes/s, apiserver %.1f req/s, controller %.0f MiB, proxy %.0f MiB",
		st.InstanceWritesPerMin, st.WritesPerInstancePer30s, st.ProbesPerSecond, st.APIServerReqPerSec, st.ControllerRSSMiB, st.ProxyRSSMiB)
	return nil
}

// propagation measures how fast c.Flips status flips reach the proxy's routes, quiet
// and under c.ChurnRate heartbeat writes per second. The controller would overwrite a
// status we set by hand, so it is stopped first; with webhooks installed their
// configurations are removed first (the controller serves them). From then on the
// harness is the only writer.
func (r *scaleRun) propagation(ctx context.Context) error {
	c, res := r.c, r.res
	if c.Flips <= 0 {
		return nil
	}
	if c.Webhooks {
		for _, o := range []client.Object{
			&admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "validating-webhook-configuration"}},
			&admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "mutating-webhook-configuration"}},
		} {
			if err := r.cl.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("removing the webhook configurations before stopping the controller: %w", err)
			}
		}
	}
	r.stopSampling() // it scrapes the controller
	if err := r.controller.Stop(15 * time.Second); err != nil {
		logf("stopping the controller: %v", err)
	}
	sleep(ctx, 2*time.Second)
	pb := newProber(r.proxyAddr)
	logf("route propagation, quiet: %d status flips", c.Flips)
	q, err := propagation(ctx, r.cl, pb, c.Flips)
	if err != nil {
		return err
	}
	res.PropagationQuiet = q
	logf("  %s", q)
	if c.ChurnRate <= 0 {
		return nil
	}
	logf("route propagation under %.0f heartbeat writes/s: %d status flips", c.ChurnRate, c.Flips)
	chctx, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	ch := startChurn(chctx, r.cl, c, c.ChurnRate)
	sleep(ctx, 3*time.Second) // let the churn reach its rate
	pm0, cpuC0 := r.scrapeProxy(), r.cpu()
	ct0 := time.Now()
	var prof string
	var pwg sync.WaitGroup
	if c.ProfileSeconds > 0 {
		prof = filepath.Join(c.WorkDir, fmt.Sprintf("proxy-churn-%d.pprof", c.Instances))
		pwg.Go(func() { fetchProfileWith(ctx, http.DefaultClient, "http://"+r.proxyAdmin, c.ProfileSeconds, prof) })
	}
	p, perr := propagation(ctx, r.cl, pb, c.Flips)
	pwg.Wait()
	pm1, cpuC1 := r.scrapeProxy(), r.cpu()
	secs := time.Since(ct0).Seconds()
	stopChurn()
	p.ChurnWritesPerSec = ch.rate()
	p.ChurnErrors = ch.errors.Load()
	p.ProxyRebuildsPerSec = (pm1.sum("slugway_proxy_route_table_builds_total", nil) - pm0.sum("slugway_proxy_route_table_builds_total", nil)) / secs
	p.ProxyCPUCores = (cpuC1["proxy"] - cpuC0["proxy"]) / secs
	p.CPUCores = cores(cpuC0, cpuC1, secs)
	p.ProxyPropagationSeconds = histDelta(pm0, pm1, "slugway_proxy_route_propagation_seconds", nil).quantile(.99)
	p.Profile = prof
	res.PropagationChurn = p
	if perr != nil {
		return perr
	}
	logf("  %s; proxy rebuilt its table %.1f times/s using %.2f cores", p, p.ProxyRebuildsPerSec, p.ProxyCPUCores)
	return nil
}

// measurePhase turns scrapes at both ends of a phase into rates.
func measurePhase(ctlA, ctlB, apiA, apiB metrics, cpuA, cpuB map[string]float64, secs float64) scaleresult.Phase {
	var p scaleresult.Phase
	p.Seconds = secs
	p.APIServerByVerb = map[string]float64{}
	by := func(m metrics) map[string]float64 {
		return m.sumBy("apiserver_request_total", nil, "verb", "group", "resource", "subresource")
	}
	a, b := by(apiA), by(apiB)
	for k, v := range b {
		d := v - a[k]
		if d <= 0 {
			continue
		}
		f := strings.Fields(k)
		if len(f) < 3 { // non-resource requests (/metrics, /healthz, …): ours, not slugway's
			continue
		}
		p.APIServerReqPerSec += d / secs
		if f[1] == "slugway.io" {
			p.APIServerSlugwayReqPerSec += d / secs
		}
		p.APIServerByVerb[k] = round(d/secs, 3)
	}
	ctl := func(m metrics) map[string]float64 { return m.sumBy("rest_client_requests_total", nil, "method") }
	ca, cb := ctl(ctlA), ctl(ctlB)
	p.ControllerClientByMethod = map[string]float64{}
	for k, v := range cb {
		if d := v - ca[k]; d > 0 {
			p.ControllerClientReqPerSec += d / secs
			p.ControllerClientByMethod[k] = round(d/secs, 3)
		}
	}
	inst := map[string]string{"name": "instance"}
	p.QueueWait = summarize(histDelta(ctlA, ctlB, "workqueue_queue_duration_seconds", inst))
	p.Work = summarize(histDelta(ctlA, ctlB, "workqueue_work_duration_seconds", inst))
	p.Reconcile = summarize(histDelta(ctlA, ctlB, "controller_runtime_reconcile_time_seconds", map[string]string{"controller": "instance"}))
	p.ReconcilesPerSec = (ctlB.sum("controller_runtime_reconcile_total", map[string]string{"controller": "instance"}) -
		ctlA.sum("controller_runtime_reconcile_total", map[string]string{"controller": "instance"})) / secs
	p.QueueDepthEnd = ctlB.sum("workqueue_depth", inst)
	p.CPUCores = cores(cpuA, cpuB, secs)
	return p
}

func cores(a, b map[string]float64, secs float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range b {
		out[k] = round((v-a[k])/secs, 3)
	}
	return out
}

func summarize(h histogram) latency {
	return latency{N: h.Count, Mean: round(h.mean(), 6), P50: round(h.quantile(.5), 6), P99: round(h.quantile(.99), 6)}
}

func round(f float64, digits int) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return -1
	}
	p := math.Pow(10, float64(digits))
	return math.Round(f*p) / p
}

// createAll creates the slugs, then the instances, with c.Workers in parallel.
func createAll(ctx context.Context, cl client.Client, c config, ports []int) error {
	var objs []client.Object
	for j := range c.Slugs {
		objs = append(objs, &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: slugName(j)}})
	}
	objs = append(objs, &slugwayv1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: probeSlug}})
	if err := parallel(ctx, c.Workers, objs, func(o client.Object) error { return cl.Create(ctx, o) }); err != nil {
		return fmt.Errorf("creating slugs: %w", err)
	}
	objs = objs[:0]
	objs = append(objs, &slugwayv1.Instance{
		ObjectMeta: metav1.ObjectMeta{Name: probeInst, Namespace: namespace},
		Spec:       slugwayv1.InstanceSpec{Slug: probeSlug, URL: fmt.Sprintf("http://127.0.0.1:%d/probe", ports[0])},
	})
	for i := range c.Instances - 1 {
		j := i % c.Slugs
		objs = append(objs, &slugwayv1.Instance{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", slugName(j), i/c.Slugs), Namespace: namespace},
			Spec:       slugwayv1.InstanceSpec{Slug: slugName(j), URL: fmt.Sprintf("http://127.0.0.1:%d/i%d", ports[i%len(ports)], i)},
		})
	}
	if err := parallel(ctx, c.Workers, objs, func(o client.Object) error { return cl.Create(ctx, o) }); err != nil {
		return fmt.Errorf("creating instances: %w", err)
	}
	return nil
}

func slugName(j int) string { return fmt.Sprintf("scale-%04d", j) }

func parallel[T any](ctx context.Context, workers int, items []T, f func(T) error) error {
	ch := make(chan T)
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for it := range ch {
				var err error
				for attempt := 0; attempt < 5; attempt++ {
					if err = f(it); err == nil || ctx.Err() != nil {
						break
					}
					time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
				}
				if err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
		}
	}
	close(ch)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// tracker watches Instances and ServiceAccounts: it counts writes (updates that
// change the resourceVersion) and Healthy instances.
type tracker struct {
	mu         sync.Mutex
	status     map[string]slugwayv1.Health
	healthy    int
	changed    chan struct{}
	instWrites atomic.Int64
	saWrites   atomic.Int64
}

func startTracker(ctx context.Context, cfg *rest.Config) (*tracker, error) {
	c, err := cache.New(cfg, cache.Options{Scheme: kubeclient.Scheme(), DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		return nil, err
	}
	t := &tracker{status: map[string]slugwayv1.Health{}, changed: make(chan struct{}, 1)}
	set := func(o any, deleted bool) {
		inst, ok := o.(*slugwayv1.Instance)
		if !ok {
			return
		}
		key := inst.Namespace + "/" + inst.Name
		t.mu.Lock()
		if t.status[key] == slugwayv1.HealthHealthy {
			t.healthy--
		}
		if deleted {
			delete(t.status, key)
		} else {
			t.status[key] = inst.Status.Status
			if inst.Status.Status == slugwayv1.HealthHealthy {
				t.healthy++
			}
		}
		t.mu.Unlock()
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
	ii, err := c.GetInformer(ctx, &slugwayv1.Instance{})
	if err != nil {
		return nil, err
	}
	if _, err := ii.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { set(o, false) },
		UpdateFunc: func(old, o any) {
			if old.(client.Object).GetResourceVersion() != o.(client.Object).GetResourceVersion() {
				t.instWrites.Add(1)
			}
			set(o, false)
		},
		DeleteFunc: func(o any) { set(o, true) },
	}); err != nil {
		return nil, err
	}
	si, err := c.GetInformer(ctx, &slugwayv1.ServiceAccount{})
	if err != nil {
		return nil, err
	}
	if _, err := si.AddEventHandler(toolscache.ResourceEventHandlerFuncs{UpdateFunc: func(old, o any) {
		if old.(client.Object).GetResourceVersion() != o.(client.Object).GetResourceVersion() {
			t.saWrites.Add(1)
		}
	}}); err != nil {
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("the harness's watch did not sync")
	}
	return t, nil
}

func (t *tracker) healthyCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.healthy
}

func (t *tracker) waitHealthy(ctx context.Context, n int, timeout time.Duration, progress func(int)) (int, error) {
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		if h := t.healthyCount(); h >= n {
			return h, nil
		}
		select {
		case <-ctx.Done():
			return t.healthyCount(), ctx.Err()
		case <-deadline:
			return t.healthyCount(), fmt.Errorf("not all instances Healthy within %s", timeout)
		case <-tick.C:
			progress(t.healthyCount())
		case <-t.changed:
		}
	}
}

// prober asks the proxy for the probe slug as fast as it answers.
type prober struct {
	url string
	hc  *http.Client
}

func newProber(addr string) *prober {
	return &prober{url: "http://" + addr + probeRoute, hc: &http.Client{Timeout: 5 * time.Second}}
}

func (p *prober) code() int {
	resp, err := p.hc.Get(p.url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// propagation flips the probe instance between Unreachable and Healthy n times,
// and measures each time from just before the status write is sent until the
// proxy answers accordingly (503: the slug has no routable instance; 200: routed).
func propagation(ctx context.Context, cl client.Client, pb *prober, n int) (*propResult, error) {
	inst := &slugwayv1.Instance{ObjectMeta: metav1.ObjectMeta{Name: probeInst, Namespace: namespace}}
	set := func(h slugwayv1.Health) error {
		patch := fmt.Sprintf(`{"status":{"status":%q}}`, h)
		return cl.Status().Patch(ctx, inst, client.RawPatch(types.MergePatchType, []byte(patch)))
	}
	// Start from a routed state.
	if err := set(slugwayv1.HealthHealthy); err != nil {
		return nil, fmt.Errorf("setting the probe instance Healthy: %w", err)
	}
	if _, ok := waitCode(ctx, pb, http.StatusOK, 30*time.Second); !ok {
		return nil, fmt.Errorf("the proxy does not route %s (want 200)", probeRoute)
	}
	r := &propResult{}
	var lat, writes []float64
	for i := range n {
		want, h := http.StatusServiceUnavailable, slugwayv1.HealthUnreachable
		if i%2 == 1 {
			want, h = http.StatusOK, slugwayv1.HealthHealthy
		}
		t0 := time.Now()
		if err := set(h); err != nil {
			return r, fmt.Errorf("status write %d: %w", i, err)
		}
		writes = append(writes, time.Since(t0).Seconds())
		d, ok := waitCode(ctx, pb, want, 10*time.Second)
		if !ok {
			r.Missed++
			continue
		}
		lat = append(lat, d.Seconds()+writes[len(writes)-1])
		if !sleep(ctx, 30*time.Millisecond+time.Duration(i%7)*10*time.Millisecond) {
			return r, ctx.Err()
		}
	}
	r.N = len(lat)
	r.P50, r.P90, r.P99, r.Max = pct(lat, .5), pct(lat, .9), pct(lat, .99), pct(lat, 1)
	r.WriteP50, r.WriteP99 = pct(writes, .5), pct(writes, .99)
	return r, nil
}

// waitCode polls until the proxy answers want, returning how long that took.
func waitCode(ctx context.Context, pb *prober, want int, timeout time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < timeout && ctx.Err() == nil {
		if pb.code() == want {
			return time.Since(start), true
		}
		time.Sleep(500 * time.Microsecond)
	}
	return time.Since(start), false
}

// pct is the q-quantile (nearest rank) of xs in seconds, rounded to 0.1 ms.
func pct(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	i = min(max(i, 0), len(s)-1)
	return round(s[i], 4)
}

// churn writes status.lastHeartbeat of the regular instances round-robin at a
// fixed rate, as the controller does at its write budget.
type churn struct {
	start  time.Time
	done   atomic.Int64
	errors atomic.Int64
	stop   atomic.Int64 // unix nanos when stopped
}

func startChurn(ctx context.Context, cl client.Client, c config, rate float64) *churn {
	ch := &churn{start: time.Now()}
	n := c.Instances - 1
	if n <= 0 {
		return ch
	}
	jobs := make(chan int, 256)
	for range 16 {
		go func() {
			for i := range jobs {
				key := types.NamespacedName{Namespace: namespace, Name: fmt.Sprintf("%s-%d", slugName(i%c.Slugs), i/c.Slugs)}
				if err := kubeclient.PatchHeartbeat(ctx, cl, key, time.Now()); err != nil {
					if ctx.Err() == nil {
						ch.errors.Add(1)
					}
					continue
				}
				ch.done.Add(1)
			}
		}()
	}
	go func() {
		defer close(jobs)
		defer func() { ch.stop.Store(time.Now().UnixNano()) }()
		next := 0
		for sent := 0; ; sent++ {
			due := ch.start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			select {
			case jobs <- next:
			case <-ctx.Done():
				return
			}
			next = (next + 1) % n
		}
	}()
	return ch
}

func (ch *churn) rate() float64 {
	end := time.Now()
	if s := ch.stop.Load(); s != 0 {
		end = time.Unix(0, s)
	}
	return round(float64(ch.done.Load())/end.Sub(ch.start).Seconds(), 1)
}

func fetchProfileWith(ctx context.Context, hc *http.Client, base string, secs int, path string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), nil)
	resp, err := hc.Do(req)
	if err != nil {
		logf("CPU profile from %s: %v", base, err)
		return
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		logf("CPU profile from %s: HTTP %d", base, resp.StatusCode)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

func scrape(hc *http.Client, url string) metrics {
	resp, err := hc.Get(url)
	if err != nil {
		logf("scraping %s: %v", url, err)
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		logf("scraping %s: HTTP %d", url, resp.StatusCode)
		return nil
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		logf("scraping %s: %v", url, err)
	}
	return m
}

func waitOK(ctx context.Context, p *proc.Proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("%s exited (%v); see %s", p.Name, err, p.Log)
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready at %s within %s; see %s", p.Name, url, timeout, p.Log)
}

// supportsFlag asks the binary's subcommand whether it knows --flag.
func supportsFlag(bin, sub, flagName string) bool {
	out, _ := exec.Command(bin, sub, "-h").CombinedOutput()
	return strings.Contains(string(out), "-"+flagName)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
