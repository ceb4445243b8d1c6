// The CRI client side of the fake containerd programs (see ../README.md):
// plays kubelet's CRI calls against the fake containerd's instrumented
// service and writes the ground truth. Built into each fake containerd.
module podtrace.test/fake-containerd/driver

go 1.19

require k8s.io/cri-api v0.0.0

// Only for building and testing this module on its own: the fake
// containerd modules choose the cri-api layout with their own replace.
replace k8s.io/cri-api => ../cri-api/gogo
