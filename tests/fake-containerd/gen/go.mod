// Generator of the fake k8s.io/cri-api packages (see ../README.md).
module podtrace.test/fake-containerd/gen

go 1.19
