// pause: the sandbox ("infra") process of a test pod. It does nothing and
// exits on SIGTERM/SIGINT. As PID 1 of the pod's PID namespace it must
// handle the signal itself: the kernel drops unhandled signals to PID 1.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
