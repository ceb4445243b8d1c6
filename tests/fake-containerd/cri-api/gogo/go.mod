// Stand-in for k8s.io/cri-api (see ../../README.md); the fake containerd
// modules `replace` k8s.io/cri-api with this directory.
module k8s.io/cri-api

go 1.19
