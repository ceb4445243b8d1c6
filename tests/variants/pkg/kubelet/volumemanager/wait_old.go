//go:build gen_old

package volumemanager

import (
	"context"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/kubernetes/pkg/api"
)

// WaitForAttachAndMount as in kubelet <= 1.27: (pod), pod in RBX, polled by
// wait.PollImmediate.
//
//go:noinline
func (vm *volumeManager) WaitForAttachAndMount(pod *api.Pod) error {
	if len(pod.Volumes) == 0 {
		return nil
	}
	return wait.PollImmediate(podAttachAndMountRetryInterval, podAttachAndMountTimeout,
		vm.verifyVolumesMountedFunc(pod.UID, pod.Volumes))
}

func (vm *volumeManager) verifyVolumesMountedFunc(podName string, expectedVolumes []string) wait.ConditionFunc {
	return func() (done bool, err error) {
		return len(vm.getUnmountedVolumes(podName, expectedVolumes)) == 0, nil
	}
}

func (vm *volumeManager) WaitForPod(_ context.Context, pod *api.Pod) error {
	return vm.WaitForAttachAndMount(pod)
}
