// Command pause is the pod sandbox of the e2e node: it holds the pod's
// namespaces open until it is told to stop. Registries with the upstream
// pause image cannot be reached from our build machines, so the node's
// sandbox image is built from this (see e2e/cmd/nodeimages).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// As PID 1 of a pod that shares its PID namespace, pause also reaps
	// orphans; ignoring SIGCHLD lets the kernel do that.
	signal.Ignore(syscall.SIGCHLD)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
