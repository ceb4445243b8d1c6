//go:build gen_new

package kubelet

import (
	"context"
	"errors"

	"k8s.io/kubernetes/pkg/api"
)

// SyncPod with kubelet 1.36+'s results (isTerminal bool, postSync func(),
// err error): postSync in RBX, err in RCX/RDI.
//
//go:noinline
func (kl *Kubelet) SyncPod(ctx context.Context, updateType int, pod, mirrorPod *api.Pod, podStatus *api.Pod) (isTerminal bool, postSync func(), err error) {
	defer func() { logExit(pod, isTerminal, err) }()
	if updateType == 3 {
		return true, nil, nil
	}
	if err := kl.prepare(ctx, pod); err != nil {
		return false, nil, errors.New("unable to attach or mount volumes: " + err.Error())
	}
	postSync = func() {
		kl.RequestPodRelist(pod.UID)
	}
	return false, postSync, nil
}

// RequestPodRelist asks the PLEG for an on-demand relist of one pod.
func (kl *Kubelet) RequestPodRelist(podUID string) {
	kl.PLEG.RequestRelist(podUID)
}

// Sync is the pod worker's call, which runs postSync after a sync.
func (kl *Kubelet) Sync(ctx context.Context, pod *api.Pod) error {
	_, postSync, err := kl.SyncPod(ctx, 2, pod, nil, nil)
	if postSync != nil {
		postSync()
	}
	return err
}
