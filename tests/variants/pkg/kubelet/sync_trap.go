//go:build gen_trap

package kubelet

import (
	"context"

	"k8s.io/kubernetes/pkg/api"
)

// SyncPod with a result shape no kubelet has (only err, in RAX/RBX): no
// catalogue variant may claim it.
//
//go:noinline
func (kl *Kubelet) SyncPod(ctx context.Context, updateType int, pod, mirrorPod *api.Pod, podStatus *api.Pod) (err error) {
	defer func() { logExit(pod, false, err) }()
	return kl.prepare(ctx, pod)
}

// Sync is the pod worker's call.
func (kl *Kubelet) Sync(ctx context.Context, pod *api.Pod) error {
	return kl.SyncPod(ctx, 2, pod, nil, nil)
}
