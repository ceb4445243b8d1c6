// Fake containerd 2.0/2.1 for podtrace's tests (see ../README.md). The
// module path is containerd's own so that the CRI handlers' symbols come out
// as in a real containerd 2.x binary:
//   github.com/containerd/containerd/v2/internal/cri/instrument.(*instrumentedService).RunPodSandbox
//   github.com/containerd/containerd/v2/internal/cri/server/images.(*GRPCCRIImageService).PullImage
// containerd 2.0/2.1 use k8s.io/cri-api v0.31 (gogo layout). The same code
// built with -modfile=go.2.2.mod is containerd 2.2+ (cri-api v0.34,
// protobuf-go layout).
module github.com/containerd/containerd/v2

go 1.19

require (
	k8s.io/cri-api v0.31.2
	podtrace.test/fake-containerd/driver v0.0.0
)

replace (
	k8s.io/cri-api => ../cri-api/gogo
	podtrace.test/fake-containerd/driver => ../driver
)
