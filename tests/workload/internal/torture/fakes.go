package torture

import (
	"sync"
	"sync/atomic"

	"k8s.io/kubernetes/pkg/kubelet/volumemanager/cache"
	"k8s.io/kubernetes/pkg/volume/util/operationexecutor"
	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// plan says what the fake caches do when called for one torture pod.
type plan struct {
	expected []string // volume names the pod mounts
	aswDepth int      // deep() levels inside GetMountedVolumesForPod
	popDepth int      // deep() levels inside PopPodErrors
	aswPanic bool     // panic inside GetMountedVolumesForPod (after recursing)
	aswSP    uintptr  // sp() at entry to the last GetMountedVolumesForPod
	aswSP2   uintptr  // sp() after its deep() recursion, just before it panics or returns
	popSP    uintptr  // sp() at entry to the last PopPodErrors
	aswCalls int
	popCalls int
}

// tortureASW is an ActualStateOfWorld whose GetMountedVolumesForPod follows
// the pod's plan: recurse, then panic or report every volume mounted.
type tortureASW struct {
	cache.ActualStateOfWorld // not used (nil)
	plans                    *sync.Map
	calls                    int64
}

type tortureePanic struct{ pod volumetypes.UniquePodName }

// GetMountedVolumesForPod is nosplit so that its own prologue never grows
// the stack: if the SP it records shows a moved stack, the growth happened
// before it was entered.
//
//go:nosplit
func (a *tortureASW) GetMountedVolumesForPod(podName volumetypes.UniquePodName) []cache.MountedVolume {
	return a.getMountedVolumesForPod(podName, sp())
}

func (a *tortureASW) getMountedVolumesForPod(podName volumetypes.UniquePodName, callerSP uintptr) []cache.MountedVolume {
	atomic.AddInt64(&a.calls, 1)
	v, _ := a.plans.Load(podName)
	p := v.(*plan)
	p.aswCalls++
	p.aswSP = callerSP
	if p.aswDepth > 0 {
		deep(p.aswDepth)
	}
	p.aswSP2 = sp()
	if p.aswPanic {
		panic(tortureePanic{pod: podName})
	}
	out := make([]cache.MountedVolume, 0, len(p.expected))
	for _, name := range p.expected {
		out = append(out, cache.MountedVolume{MountedVolume: operationexecutor.MountedVolume{
			PodName: podName, OuterVolumeSpecName: name,
		}})
	}
	return out
}

// tortureDSW is a DesiredStateOfWorld whose PopPodErrors recurses per plan.
type tortureDSW struct {
	cache.DesiredStateOfWorld // not used (nil)
	plans                     *sync.Map
	calls                     int64
}

// PopPodErrors is nosplit for the same reason as GetMountedVolumesForPod.
//
//go:nosplit
func (d *tortureDSW) PopPodErrors(podName volumetypes.UniquePodName) []string {
	return d.popPodErrors(podName, sp())
}

func (d *tortureDSW) popPodErrors(podName volumetypes.UniquePodName, callerSP uintptr) []string {
	atomic.AddInt64(&d.calls, 1)
	v, _ := d.plans.Load(podName)
	p := v.(*plan)
	p.popCalls++
	p.popSP = callerSP
	if p.popDepth > 0 {
		deep(p.popDepth)
	}
	return nil
}
