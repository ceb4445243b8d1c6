//go:build !kubelet136

package kubelet

import (
	"context"

	v1 "k8s.io/api/core/v1"

	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
)

// podSyncer describes the core lifecycle operations of the pod state machine.
type podSyncer interface {
	// SyncPod configures the pod and starts and restarts all containers. If it returns true, the
	// pod has reached a terminal state and the presence of the error indicates succeeded or failed.
	// If an error is returned, the sync was not successful and should be rerun in the future. This
	// is a long running method and should exit early with context.Canceled if the context is canceled.
	SyncPod(ctx context.Context, updateType kubetypes.SyncPodType, pod *v1.Pod, mirrorPod *v1.Pod, podStatus *kubecontainer.PodStatus) (bool, error)
}

// syncPod calls the podSyncer's SyncPod (the workload's adapter between the
// two result shapes: kubelet calls SyncPod right in podWorkerLoop). Before
// 1.36 there is no postSync.
func (p *podWorkers) syncPod(ctx context.Context, updateType kubetypes.SyncPodType, pod, mirrorPod *v1.Pod, status *kubecontainer.PodStatus) (bool, func(), error) {
	isTerminal, err := p.podSyncer.SyncPod(ctx, updateType, pod, mirrorPod, status)
	return isTerminal, nil, err
}
