package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/slugway/slugway/hack/scale/scaleresult"
)

// The result types live in scaleresult, which hack/plot reads too.
type (
	result     = scaleresult.Result
	steady     = scaleresult.Steady
	latency    = scaleresult.Latency
	propResult = scaleresult.Prop
	point      = scaleresult.Point
)

func newResult(c config, args []string) *result {
	return &result{
		Date:             time.Now().UTC().Format(time.RFC3339),
		Machine:          fmt.Sprintf("%s, %d CPUs (%s/%s)", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH),
		CPUs:             runtime.NumCPU(),
		GoVersion:        runtime.Version(),
		Command:          "go run ./hack/scale " + strings.Join(args[1:], " "),
		Instances:        c.Instances,
		Slugs:            c.Slugs + 1,
		Ports:            c.Ports,
		HeartbeatRefresh: c.HeartbeatRefresh.String(),
		Webhooks:         c.Webhooks,
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
