// podtrace test workload: a kubelet-shaped program (see README.md).
// The module path is k8s.io/kubernetes on purpose, so that function symbols
// come out exactly as in a real kubelet binary.
module k8s.io/kubernetes

go 1.19

require (
	k8s.io/api v0.0.0
	k8s.io/apimachinery v0.0.0
	k8s.io/client-go v0.0.0
	k8s.io/cri-api v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/cri-api => ./staging/src/k8s.io/cri-api
)
