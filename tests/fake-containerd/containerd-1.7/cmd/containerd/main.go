// Command containerd is a fake containerd 1.7: the real CRI handler chain
// (instrumentedService -> criService) with the real symbols and request
// layouts, driven in-process by the CRI client in podtrace.test/fake-containerd/driver.
package main

import (
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/pkg/cri/instrument"
	"github.com/containerd/containerd/pkg/cri/server"
	"podtrace.test/fake-containerd/driver"
)

func main() {
	driver.Main("1.7", newServices)
}

func newServices(env driver.Env) driver.Services {
	log.SetOutput(env.Log)
	c, err := server.NewCRIService(server.Config{Images: env.Images})
	if err != nil {
		panic(err)
	}
	return instrument.NewService(c)
}
