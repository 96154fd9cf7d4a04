// Package e2e drives the real binaries as processes (slugway controller, slugway proxy,
// skeleton-svc) against a real kube-apiserver and etcd, with kubectl and real HTTP
// backends, replaying the seed's walkthrough plus ownership and fault scenarios.
package e2e

import (
	"testing"

	"github.com/slugway/slugway/test/harness"
)

var c *harness.Cluster

func TestMain(m *testing.M) { harness.Main(m, &c) }
