//go:build kubelet136

package kubelet

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/kubernetes/internal/groundtruth"
	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
)

// KubeletShape names the kubelet versions whose signatures this build has.
const KubeletShape = "1.36"

// SyncPod is the transaction script for the sync of a single pod (setting up)
// a pod. This method is reentrant and expected to converge a pod towards the
// desired state of the spec. The reverse (teardown) is handled in
// SyncTerminatingPod and SyncTerminatedPod. If SyncPod exits without error,
// then the pod runtime state is in sync with the desired configuration state
// (pod is running). If SyncPod exits with a transient error, the next
// invocation of SyncPod is expected to make progress towards reaching the
// desired state. SyncPod exits with isTerminal when the pod was detected to
// have reached a terminal lifecycle phase due to container exits (for
// RestartNever or RestartOnFailure) and the next method invoked will be
// SyncTerminatingPod. If the pod terminates for any other reason, SyncPod
// will receive a context cancellation and should exit as soon as possible.
// This is kubelet 1.36's shape (build tag kubelet136).
//
// The workflow is (the workload keeps the steps marked *):
//   - If the pod is being created, record pod worker start latency
//   - Call generateAPIPodStatus to prepare an v1.PodStatus for the pod
//   - If the pod is being seen as running for the first time, record pod
//     start latency
//   - Update the status of the pod in the status manager
//   - Stop the pod's containers if it should not be running due to soft
//     admission
//   - Ensure any background tracking for a runnable pod is started
//   - * Create a mirror pod if the pod is a static pod / create cgroups
//     (a sleep of --prep-latency)
//   - * Create the data directories for the pod if they do not exist
//   - * Wait for volumes to attach/mount
//   - * Fetch the pull secrets for the pod
//   - * Call the container runtime's SyncPod callback
//   - Update the traffic shaping for the pod's ingress and egress limits
//
// Entry (amd64): RAX=kl, RBX/RCX=ctx (itab, data), RDI=updateType
// (0 sync, 1 update, 2 create, 3 kill), RSI=pod, R8=mirrorPod, R9=podStatus.
// Returns isTerminal in AL, postSync in RBX, err in RCX/RDI (kubelet 1.36+).
// postSync (set when the runtime acted and all went well) asks PLEG for an
// on-demand relist of the pod; the pod worker runs it right after SyncPod
// returned.
//
// noinline: kubelet's SyncPod is far too large to inline; it is only called
// through the podSyncer interface, but keep it a real call regardless.
//
//go:noinline
func (kl *Kubelet) SyncPod(ctx context.Context, updateType kubetypes.SyncPodType, pod, mirrorPod *v1.Pod, podStatus *kubecontainer.PodStatus) (isTerminal bool, postSync func(), err error) {
	defer groundtruth.Enter(ctx, groundtruth.InSync)() // the workload's, not kubelet's
	result, err := kl.syncPodSteps(ctx, pod, podStatus)
	if len(result.SyncResults) > 0 && err == nil {
		postSync = func() {
			kl.RequestPodRelist(pod.UID)
		}
	}
	return false, postSync, err
}

// RequestPodRelist asks PLEG for an on-demand relist of one pod.
func (kl *Kubelet) RequestPodRelist(podUID types.UID) {
	kl.pleg.RequestRelist(podUID)
}
