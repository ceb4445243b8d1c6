// Fake containerd 2.2+ (use with `go build -modfile=go.2.2.mod`): the same
// code as go.mod's 2.0/2.1, with k8s.io/cri-api v0.34's protobuf-go
// layout (every request field 8 bytes further, ProtoReflect methods).
module github.com/containerd/containerd/v2

go 1.19

require (
	k8s.io/cri-api v0.34.1
	podtrace.test/fake-containerd/driver v0.0.0
)

replace (
	k8s.io/cri-api => ../cri-api/protobuf
	podtrace.test/fake-containerd/driver => ../driver
)
