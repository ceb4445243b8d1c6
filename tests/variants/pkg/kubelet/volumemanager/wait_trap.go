//go:build gen_trap

package volumemanager

import (
	"context"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/kubernetes/pkg/api"
)

// WaitForAttachAndMount with the 1.28+ arguments (ctx, pod) but neither
// poll helper the catalogue knows: a catalogue that falls back to the
// <= 1.27 variant here reads the ctx's data word in RBX as the pod.
//
//go:noinline
func (vm *volumeManager) WaitForAttachAndMount(ctx context.Context, pod *api.Pod) error {
	if len(pod.Volumes) == 0 {
		return nil
	}
	return wait.PollUntilContextCancel(ctx, podAttachAndMountRetryInterval, true,
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
