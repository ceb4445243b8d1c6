// app: the container of a test pod. It prints one line (to the CRI log) and
// sleeps until SIGTERM/SIGINT, then prints another line and exits 0.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	host, _ := os.Hostname()
	fmt.Printf("app started pid=%d host=%s args=%q\n", os.Getpid(), host, os.Args[1:])
	s := <-c
	fmt.Printf("app got %v, exiting\n", s)
}
