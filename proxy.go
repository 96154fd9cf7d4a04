package main

import "errors"

// runProxy is the data plane entry point; see the proxy package.
func runProxy(args []string) error {
	return errors.New("not implemented yet")
}
