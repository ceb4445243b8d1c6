// Package volumemanager has WaitForAttachAndMount in the shapes of different
// kubelet versions, chosen by build tag (see ../../../README.md).
package volumemanager

import (
	"context"
	"sort"
	"time"

	"k8s.io/kubernetes/pkg/api"
)

const (
	podAttachAndMountTimeout       = 2*time.Minute + 3*time.Second
	podAttachAndMountRetryInterval = 300 * time.Millisecond
)

// VolumeManager is what the kubelet holds (kubelet's is an interface too).
type VolumeManager interface {
	WaitForPod(ctx context.Context, pod *api.Pod) error
}

type volumeManager struct {
	mounted map[string][]string
}

func New() VolumeManager { return &volumeManager{mounted: map[string][]string{}} }

// getUnmountedVolumes is the per-tick check (kubelet's is too large to
// inline; keep ours out of line as well).
//
//go:noinline
func (vm *volumeManager) getUnmountedVolumes(podName string, expectedVolumes []string) []string {
	have := map[string]bool{}
	for _, v := range vm.mounted[podName] {
		have[v] = true
	}
	var out []string
	for _, v := range expectedVolumes {
		if !have[v] {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}
