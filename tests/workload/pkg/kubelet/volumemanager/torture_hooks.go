package volumemanager

import (
	"context"

	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager/cache"
	"k8s.io/kubernetes/pkg/volume/util/types"
)

// TortureHandle gives the workload's torture driver (internal/torture)
// access to the probed, unexported volume manager methods, which it calls
// exactly as kubelet's own code does. Not part of kubelet.
type TortureHandle struct{ vm *volumeManager }

// NewTortureHandle returns a volume manager built on the given caches, with
// a populator that does nothing and no ground-truth recorder.
func NewTortureHandle(asw cache.ActualStateOfWorld, dsw cache.DesiredStateOfWorld) *TortureHandle {
	return &TortureHandle{vm: &volumeManager{
		actualStateOfWorld:           asw,
		desiredStateOfWorld:          dsw,
		desiredStateOfWorldPopulator: noopPopulator{},
	}}
}

// VolumeManager returns the handle's volume manager.
func (h *TortureHandle) VolumeManager() VolumeManager { return h.vm }

// GetUnmountedVolumes calls (*volumeManager).getUnmountedVolumes.
func (h *TortureHandle) GetUnmountedVolumes(podName types.UniquePodName, expectedVolumes []string) []string {
	return h.vm.getUnmountedVolumes(podName, expectedVolumes)
}

// VerifyVolumesMountedFunc calls (*volumeManager).verifyVolumesMountedFunc
// and returns its closure (...verifyVolumesMountedFunc.func1).
func (h *TortureHandle) VerifyVolumesMountedFunc(podName types.UniquePodName, expectedVolumes []string) wait.ConditionWithContextFunc {
	return h.vm.verifyVolumesMountedFunc(podName, expectedVolumes)
}

type noopPopulator struct{}

func (noopPopulator) Run(context.Context, config.SourcesReady) {}
func (noopPopulator) ReprocessPod(types.UniquePodName)         {}
func (noopPopulator) HasAddedPods() bool                       { return true }
