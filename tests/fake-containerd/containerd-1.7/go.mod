// Fake containerd 1.7 for podtrace's tests (see ../README.md). The module
// path is containerd's own so that the CRI handlers' symbols come out as in
// a real containerd 1.7 binary:
//   github.com/containerd/containerd/pkg/cri/instrument.(*instrumentedService).RunPodSandbox
// containerd 1.7 uses k8s.io/cri-api v0.27 (gogo layout).
module github.com/containerd/containerd

go 1.19

require (
	k8s.io/cri-api v0.27.1
	podtrace.test/fake-containerd/driver v0.0.0
)

replace (
	k8s.io/cri-api => ../cri-api/gogo
	podtrace.test/fake-containerd/driver => ../driver
)
