// Command containerd is a fake containerd 2.x: the real CRI handler chain
// (instrumentedService -> criGRPCServer -> criService, and for PullImage
// images.GRPCCRIImageService -> CRIImageService) with the real symbols and
// request layouts, driven in-process by the CRI client in
// podtrace.test/fake-containerd/driver.
package main

import (
	"github.com/containerd/containerd/v2/internal/log"
	"github.com/containerd/containerd/v2/plugins/cri"
	"podtrace.test/fake-containerd/driver"
)

// version is set by build.sh (-X main.version=2.2).
var version = "2.0"

func main() {
	driver.Main(version, newServices)
}

func newServices(env driver.Env) driver.Services {
	log.SetOutput(env.Log)
	return cri.NewService(env.Images)
}
