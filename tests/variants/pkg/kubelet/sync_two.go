//go:build gen_old || gen_mid

package kubelet

import (
	"context"
	"errors"

	"k8s.io/kubernetes/pkg/api"
)

// SyncPod with kubelet 1.27-1.35's results (isTerminal bool, err error):
// err in RBX/RCX. Like kubelet's, it defers a closure that reads the results.
//
//go:noinline
func (kl *Kubelet) SyncPod(ctx context.Context, updateType int, pod, mirrorPod *api.Pod, podStatus *api.Pod) (isTerminal bool, err error) {
	defer func() { logExit(pod, isTerminal, err) }()
	if updateType == 3 {
		return true, nil
	}
	if err := kl.prepare(ctx, pod); err != nil {
		return false, errors.New("unable to attach or mount volumes: " + err.Error())
	}
	return false, nil
}

// Sync is the pod worker's call.
func (kl *Kubelet) Sync(ctx context.Context, pod *api.Pod) error {
	_, err := kl.SyncPod(ctx, 2, pod, nil, nil)
	return err
}
