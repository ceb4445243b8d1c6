//go:build gen_mid || gen_new

package volumemanager

import (
	"context"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/kubernetes/pkg/api"
)

// WaitForAttachAndMount as in kubelet 1.28+: (ctx, pod), pod in RDI, polled
// by wait.PollUntilContextTimeout.
//
//go:noinline
func (vm *volumeManager) WaitForAttachAndMount(ctx context.Context, pod *api.Pod) error {
	if len(pod.Volumes) == 0 {
		return nil
	}
	return wait.PollUntilContextTimeout(ctx, podAttachAndMountRetryInterval, podAttachAndMountTimeout, true,
		vm.verifyVolumesMountedFunc(pod.UID, pod.Volumes))
}

func (vm *volumeManager) verifyVolumesMountedFunc(podName string, expectedVolumes []string) wait.ConditionWithContextFunc {
	return func(_ context.Context) (done bool, err error) {
		return len(vm.getUnmountedVolumes(podName, expectedVolumes)) == 0, nil
	}
}

func (vm *volumeManager) WaitForPod(ctx context.Context, pod *api.Pod) error {
	return vm.WaitForAttachAndMount(ctx, pod)
}
