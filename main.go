// Command slugway is the slug registry and router. One binary, two jobs:
//
//	slugway controller   reconciles Instances and ServiceAccounts, probes health,
//	                     and serves the ownership admission webhooks
//	slugway proxy        routes /<slug>/... to a healthy instance of the slug
//
// Each subcommand lives in its own file, controller.go and proxy.go; what they
// share (the SSRF guard, logging and Kubernetes config) is in setup.go.
package main

import (
	"fmt"
	"os"
)

var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "controller":
		err = runController(os.Args[2:])
	case "proxy":
		err = runProxy(os.Args[2:])
	case "version", "--version":
		fmt.Println(version)
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "slugway: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "slugway %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `slugway: a Kubernetes-native service registry and slug router.

Usage:
  slugway controller [flags]   run the controller manager (health, ownership, webhooks)
  slugway proxy [flags]        run the data plane that routes /<slug>/... to instances
  slugway version              print the version

Run "slugway <command> -h" for the flags of a command.
`)
}
