// Package e2e drives the real binaries as processes (slugway controller, slugway proxy,
// skeleton-svc) against a real kube-apiserver and etcd, with kubectl and real HTTP
// backends, replaying the seed's walkthrough plus ownership and fault scenarios.
package e2e

import (
	"flag"
	"regexp"
	"strings"
	"testing"

	"github.com/slugway/slugway/test/harness"
)

var c *harness.Cluster

// lastTest kills the apiserver for good, so it runs after all the others, in
// any order -shuffle gives them.
const lastTest = "TestAPIServerDownProxyKeepsServing"

func TestMain(m *testing.M) { harness.Main(lastRunner{m}, &c) }

// lastRunner runs the tests in two passes: every test -run and -skip select except
// lastTest, then lastTest alone if they select it.
type lastRunner struct{ m *testing.M }

func (r lastRunner) Run() int {
	flag.Parse()
	run, skip := flag.Lookup("test.run").Value.String(), flag.Lookup("test.skip").Value.String()
	withLast := "^" + lastTest + "$"
	if skip != "" {
		withLast = skip + "|" + withLast
	}
	must(flag.Set("test.skip", withLast))
	if code := r.m.Run(); code != 0 || !selects(run, true) || selects(skip, false) {
		return code
	}
	must(flag.Set("test.run", "^"+lastTest+"$"))
	must(flag.Set("test.skip", skip))
	return r.m.Run()
}

// selects reports whether the top-level part of a -run or -skip pattern matches
// lastTest; empty means all for -run and none for -skip.
func selects(pattern string, empty bool) bool {
	if pattern == "" {
		return empty
	}
	top, _, _ := strings.Cut(pattern, "/")
	ok, err := regexp.MatchString(top, lastTest)
	return err == nil && ok
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
