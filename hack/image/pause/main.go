// Command pause is the sandbox ("pause") container of every pod on the node hack/node.sh
// brings up. It holds the pod's namespaces open: it blocks until SIGTERM or SIGINT and, as
// PID 1 of a pod that shares its process namespace, reaps the children that get reparented
// to it. No image can be pulled on that node, so hack/image builds this one from source.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
