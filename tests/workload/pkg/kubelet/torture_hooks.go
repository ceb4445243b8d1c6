package kubelet

import (
	"path/filepath"

	"k8s.io/client-go/util/flowcontrol"

	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
	"k8s.io/kubernetes/pkg/kubelet/kuberuntime"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager"
)

// NewTortureKubelet returns a Kubelet for the workload's torture driver
// (internal/torture): the given volume manager, a runtime manager whose CRI
// calls return at once, no prepare latency, no ground truth. Not part of
// kubelet.
func NewTortureKubelet(rootDirectory string, vm volumemanager.VolumeManager) *Kubelet {
	return &Kubelet{
		rootDirectory: rootDirectory,
		volumeManager: vm,
		containerRuntime: kuberuntime.NewKubeGenericRuntimeManager(
			kuberuntime.NewLatencyRuntimeService(0), filepath.Join(rootDirectory, "logs", "pods"), nil),
		podCache:         kubecontainer.NewCache(),
		crashLoopBackOff: flowcontrol.NewBackOff(backOffPeriod, MaxContainerBackOff),
	}
}
