package main

import (
	"flag"
	"fmt"
	"strings"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/slugway/slugway/netguard"
)

// common is the setup both subcommands share: the SSRF guard's flags, the zap
// logging flags, then the logger, the guard and the Kubernetes config built from them.
type common struct {
	denyCIDRs     string
	allowLoopback bool
	zap           zap.Options
}

// bindCommon registers the shared flags on fs. denyHelp says what --deny-cidrs
// guards in this subcommand.
func bindCommon(fs *flag.FlagSet, denyHelp, loopbackHelp string) *common {
	c := &common{}
	fs.StringVar(&c.denyCIDRs, "deny-cidrs", strings.Join(netguard.DefaultDeny, ","), denyHelp)
	fs.BoolVar(&c.allowLoopback, "allow-loopback", false, loopbackHelp)
	c.zap.BindFlags(fs)
	return c
}

// setup, after the flags are parsed, installs the logger and returns the guard
// and the Kubernetes config (from --kubeconfig, $KUBECONFIG, in-cluster or ~/.kube/config).
func (c *common) setup() (*netguard.Guard, *rest.Config, error) {
	guard, err := netguard.New(splitList(c.denyCIDRs), c.allowLoopback)
	if err != nil {
		return nil, nil, fmt.Errorf("--deny-cidrs: %w", err)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&c.zap)))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("no Kubernetes API to talk to: %w (set KUBECONFIG or run in a cluster)", err)
	}
	return guard, cfg, nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
