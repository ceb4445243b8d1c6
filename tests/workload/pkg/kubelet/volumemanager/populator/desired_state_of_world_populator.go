// Package populator implements interfaces that monitor and keep the states of the
// caches in sync with the "ground truth".
package populator

import (
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager/cache"
	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/util"
	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// DesiredStateOfWorldPopulator periodically loops through the list of active
// pods and ensures that each one exists in the desired state of the world cache
// if it has volumes. It also verifies that the pods in the desired state of the
// world cache still exist, if not, it removes them.
type DesiredStateOfWorldPopulator interface {
	Run(ctx context.Context, sourcesReady config.SourcesReady)

	// ReprocessPod sets value for the specified pod in processedPods
	// to false, forcing it to be reprocessed. This is required to enable
	// remounting volumes on pod updates (volumes like Downward API volumes
	// depend on this behavior to ensure volume content is updated).
	ReprocessPod(podName volumetypes.UniquePodName)

	// HasAddedPods returns whether the populator has looped through the list
	// of active pods and added them to the desired state of the world cache,
	// at a time after sources are all ready, at least once. It does not
	// return true before sources are all ready because before then, there is
	// a chance many or all pods are missing from the list of active pods and
	// so few to none will have been added.
	HasAddedPods() bool
}

// PodManager is the subset of methods the manager needs to observe the actual state of the kubelet.
type PodManager interface {
	GetPodByUID(types.UID) (*v1.Pod, bool)
	GetPods() []*v1.Pod
}

// PodStateProvider can determine if a pod is going to be terminated.
type PodStateProvider interface {
	ShouldPodContainersBeTerminating(types.UID) bool
	ShouldPodRuntimeBeRemoved(types.UID) bool
}

// NewDesiredStateOfWorldPopulator returns a new instance of
// DesiredStateOfWorldPopulator.
func NewDesiredStateOfWorldPopulator(
	loopSleepDuration time.Duration,
	podManager PodManager,
	podStateProvider PodStateProvider,
	desiredStateOfWorld cache.DesiredStateOfWorld,
	actualStateOfWorld cache.ActualStateOfWorld,
	gt *groundtruth.Recorder) DesiredStateOfWorldPopulator {
	return &desiredStateOfWorldPopulator{
		loopSleepDuration:         loopSleepDuration,
		getPodStatusRetryDuration: 2 * time.Second,
		podManager:                podManager,
		podStateProvider:          podStateProvider,
		desiredStateOfWorld:       desiredStateOfWorld,
		actualStateOfWorld:        actualStateOfWorld,
		pods: processedPods{
			processedPods: make(map[volumetypes.UniquePodName]bool)},
		hasAddedPods: false,
		gt:           gt,
	}
}

type desiredStateOfWorldPopulator struct {
	loopSleepDuration         time.Duration
	getPodStatusRetryDuration time.Duration
	podManager                PodManager
	podStateProvider          PodStateProvider
	desiredStateOfWorld       cache.DesiredStateOfWorld
	actualStateOfWorld        cache.ActualStateOfWorld
	pods                      processedPods
	timeOfLastGetPodStatus    time.Time
	hasAddedPods              bool
	hasAddedPodsLock          sync.RWMutex
	gt                        *groundtruth.Recorder
	goid                      int64
	addedInLastLoop           int // pods processed by the last findAndAddNewPods (populator goroutine only)
}

type processedPods struct {
	processedPods map[volumetypes.UniquePodName]bool
	sync.RWMutex
}

// Run waits for the sources, then runs populatorLoop every loopSleepDuration
// (100 ms in kubelet) until ctx is done.
//
// noinline: keep the symbol callable for a probe (it is only started with go
// through an interface, so this is belt and braces).
//
//go:noinline
func (dswp *desiredStateOfWorldPopulator) Run(ctx context.Context, sourcesReady config.SourcesReady) {
	if dswp.gt != nil {
		dswp.goid = groundtruth.Goid()
	}
	// Wait for the completion of a loop that started after sources are all ready, then set hasAddedPods accordingly
	_ = wait.PollUntilContextCancel(ctx, dswp.loopSleepDuration, false, func(ctx context.Context) (bool, error) {
		done := sourcesReady.AllReady()
		dswp.populatorLoop(ctx)
		return done, nil
	})
	dswp.hasAddedPodsLock.Lock()
	if !dswp.hasAddedPods {
		dswp.hasAddedPods = true
	}
	dswp.hasAddedPodsLock.Unlock()
	wait.UntilWithContext(ctx, dswp.populatorLoop, dswp.loopSleepDuration)
}

func (dswp *desiredStateOfWorldPopulator) ReprocessPod(
	podName volumetypes.UniquePodName) {
	dswp.markPodProcessingFailed(podName)
}

func (dswp *desiredStateOfWorldPopulator) HasAddedPods() bool {
	dswp.hasAddedPodsLock.RLock()
	defer dswp.hasAddedPodsLock.RUnlock()
	return dswp.hasAddedPods
}

// populatorLoop is one populator tick: findAndAddNewPods, and every 2 s
// findAndRemoveDeletedPods.
//
// noinline: small; the closure in Run would otherwise inline it.
//
//go:noinline
func (dswp *desiredStateOfWorldPopulator) populatorLoop(ctx context.Context) {
	start := dswp.monoNow()
	dswp.addedInLastLoop = 0
	dswp.findAndAddNewPods(ctx)
	added := dswp.addedInLastLoop
	if dswp.gt != nil {
		end := groundtruth.MonoNow()
		dswp.gt.Add(groundtruth.Record{
			Stage:     "populate",
			StartMono: start,
			EndMono:   end,
			Goid:      dswp.goid,
			Extra:     []groundtruth.KV{{K: "added_pods", V: added}},
		})
	}

	// findAndRemoveDeletedPods() calls out to the container runtime to
	// determine if the containers for a given pod are terminated. This is
	// an expensive operation, therefore we limit the rate that
	// findAndRemoveDeletedPods() is called independently of the main
	// populator loop.
	if time.Since(dswp.timeOfLastGetPodStatus) < dswp.getPodStatusRetryDuration {
		return
	}

	dswp.findAndRemoveDeletedPods()
}

func (dswp *desiredStateOfWorldPopulator) monoNow() int64 {
	if dswp.gt == nil {
		return 0
	}
	return groundtruth.MonoNow()
}

// Iterate through all pods and add to desired state of world if they don't
// exist but should.
//
// Entry (amd64): RAX=dswp, RBX/RCX=ctx.
//
// noinline: kubelet's is too large to inline; ours is small.
//
//go:noinline
func (dswp *desiredStateOfWorldPopulator) findAndAddNewPods(ctx context.Context) {
	for _, pod := range dswp.podManager.GetPods() {
		// Keep consistency of adding pod during reconstruction
		if dswp.hasAddedPods && dswp.podStateProvider.ShouldPodContainersBeTerminating(pod.UID) {
			// Do not (re)add volumes for pods that can't also be starting containers
			continue
		}

		if !dswp.hasAddedPods && dswp.podStateProvider.ShouldPodRuntimeBeRemoved(pod.UID) {
			// When kubelet restarts, we need to add pods to dsw if there is a possibility
			// that the container may still be running
			continue
		}

		dswp.processPodVolumes(ctx, pod)
	}
}

// Iterate through all pods in desired state of world, and remove if they no
// longer exist
func (dswp *desiredStateOfWorldPopulator) findAndRemoveDeletedPods() {
	dswp.timeOfLastGetPodStatus = time.Now()
	for _, volumeToMount := range dswp.desiredStateOfWorld.GetVolumesToMount() {
		if _, podExists := dswp.podManager.GetPodByUID(types.UID(volumeToMount.PodName)); podExists {
			continue
		}
		dswp.desiredStateOfWorld.DeletePodFromVolume(volumeToMount.PodName, volumeToMount.VolumeName)
		dswp.deleteProcessedPod(volumeToMount.PodName)
	}
}

// processPodVolumes processes the volumes in the given pod and adds them to the
// desired state of the world.
func (dswp *desiredStateOfWorldPopulator) processPodVolumes(
	ctx context.Context,
	pod *v1.Pod) {
	if pod == nil {
		return
	}

	uniquePodName := util.GetUniquePodName(pod)
	if dswp.podPreviouslyProcessed(uniquePodName) {
		return
	}

	allVolumesAdded := true
	mounts, devices := util.GetPodVolumeNames(pod)

	// Process volume spec for each volume defined in pod
	for i := range pod.Spec.Volumes {
		podVolume := &pod.Spec.Volumes[i]
		if !mounts.Has(podVolume.Name) && !devices.Has(podVolume.Name) {
			// Volume is not used in the pod, ignore it.
			continue
		}
		volumeSpec := volume.NewSpecFromVolume(podVolume)

		// Add volume to desired state of world
		_, err := dswp.desiredStateOfWorld.AddPodToVolume(
			uniquePodName, pod, volumeSpec, podVolume.Name, "" /* volumeGidValue */, nil)
		if err != nil {
			dswp.desiredStateOfWorld.AddErrorToPod(uniquePodName, err.Error())
			allVolumesAdded = false
		}
	}

	// some of the volume additions may have failed, should not mark this pod as fully processed
	if allVolumesAdded {
		dswp.markPodProcessed(uniquePodName)
		dswp.addedInLastLoop++
	}
}

// podPreviouslyProcessed returns true if the volumes for this pod have already
// been processed/reprocessed by the populator. Otherwise, the volumes for this pod need to
// be reprocessed.
func (dswp *desiredStateOfWorldPopulator) podPreviouslyProcessed(
	podName volumetypes.UniquePodName) bool {
	dswp.pods.RLock()
	defer dswp.pods.RUnlock()

	return dswp.pods.processedPods[podName]
}

// markPodProcessingFailed marks the specified pod from processedPods as false to indicate that it failed processing
func (dswp *desiredStateOfWorldPopulator) markPodProcessingFailed(
	podName volumetypes.UniquePodName) {
	dswp.pods.Lock()
	dswp.pods.processedPods[podName] = false
	dswp.pods.Unlock()
}

// markPodProcessed records that the volumes for the specified pod have been
// processed by the populator
func (dswp *desiredStateOfWorldPopulator) markPodProcessed(
	podName volumetypes.UniquePodName) {
	dswp.pods.Lock()
	defer dswp.pods.Unlock()

	dswp.pods.processedPods[podName] = true
}

// deleteProcessedPod removes the specified pod from processedPods
func (dswp *desiredStateOfWorldPopulator) deleteProcessedPod(
	podName volumetypes.UniquePodName) {
	dswp.pods.Lock()
	defer dswp.pods.Unlock()

	delete(dswp.pods.processedPods, podName)
}
