// Package kubelet has (*Kubelet).SyncPod in the result shapes of different
// kubelet versions, chosen by build tag (see ../../README.md).
package kubelet

import (
	"context"
	"fmt"
	"os"

	"k8s.io/kubernetes/pkg/api"
	"k8s.io/kubernetes/pkg/kubelet/pleg"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager"
)

type Kubelet struct {
	VolumeManager volumemanager.VolumeManager
	PLEG          *pleg.GenericPLEG
}

// logExit stands for kubelet's deferred "SyncPod exit" log line.
func logExit(pod *api.Pod, isTerminal bool, err error) {
	if len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "SyncPod exit", pod.Name, isTerminal, err)
	}
}

func (kl *Kubelet) prepare(ctx context.Context, pod *api.Pod) error {
	return kl.VolumeManager.WaitForPod(ctx, pod)
}
