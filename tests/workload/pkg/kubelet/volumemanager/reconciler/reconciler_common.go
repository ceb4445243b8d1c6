// Package reconciler implements interfaces that attempt to reconcile the
// desired state of the world with the actual state of the world by triggering
// relevant actions (attach, detach, mount, unmount).
package reconciler

import (
	"sync"
	"time"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager/cache"
	"k8s.io/kubernetes/pkg/volume/util/nestedpendingoperations"
	"k8s.io/kubernetes/pkg/volume/util/operationexecutor"
)

// Reconciler runs a periodic loop to reconcile the desired state of the world
// with the actual state of the world by triggering attach, detach, mount, and
// unmount operations.
// Note: This is distinct from the Reconciler implemented by the attach/detach
// controller. This reconciles state for the kubelet volume manager. That
// reconciles state for the attach/detach controller.
type Reconciler interface {
	// Starts running the reconciliation loop which executes periodically, checks
	// if volumes that should be mounted are mounted and volumes that should
	// be unmounted are unmounted. If not, it will trigger mount/unmount
	// operations to rectify.
	// If attach/detach management is enabled, the manager will also check if
	// volumes that should be attached are attached and volumes that should
	// be detached are detached and trigger attach/detach operations as needed.
	Run(stopCh <-chan struct{})

	// StatesHasBeenSynced returns true only after syncStates process starts to sync
	// states at least once after kubelet starts
	StatesHasBeenSynced() bool
}

// NewReconciler returns a new instance of Reconciler.
//
// loopSleepDuration - the amount of time the reconciler loop sleeps between
// successive executions
// desiredStateOfWorld - cache containing the desired state of the world
// actualStateOfWorld - cache containing the actual state of the world
// populatorHasAddedPods - checker for whether the populator has finished
// adding pods to the desiredStateOfWorld cache at least once after sources
// are all ready (before sources are ready, pods are probably missing)
// operationExecutor - used to trigger mount operations (each runs on a
// goroutine of its own and marks the volume mounted in actualStateOfWorld)
func NewReconciler(
	loopSleepDuration time.Duration,
	waitForAttachTimeout time.Duration,
	desiredStateOfWorld cache.DesiredStateOfWorld,
	actualStateOfWorld cache.ActualStateOfWorld,
	populatorHasAddedPods func() bool,
	operationExecutor operationexecutor.OperationExecutor,
	gt *groundtruth.Recorder) Reconciler {
	return &reconciler{
		loopSleepDuration:     loopSleepDuration,
		waitForAttachTimeout:  waitForAttachTimeout,
		desiredStateOfWorld:   desiredStateOfWorld,
		actualStateOfWorld:    actualStateOfWorld,
		populatorHasAddedPods: populatorHasAddedPods,
		operationExecutor:     operationExecutor,
		timeOfLastSync:        time.Time{},
		gt:                    gt,
	}
}

type reconciler struct {
	loopSleepDuration     time.Duration
	waitForAttachTimeout  time.Duration
	desiredStateOfWorld   cache.DesiredStateOfWorld
	actualStateOfWorld    cache.ActualStateOfWorld
	populatorHasAddedPods func() bool
	operationExecutor     operationexecutor.OperationExecutor
	timeOfLastSync        time.Time
	syncLock              sync.RWMutex
	gt                    *groundtruth.Recorder
	goid                  int64
	startedInLastLoop     int // mount operations started; reconciler goroutine only
}

func (rc *reconciler) StatesHasBeenSynced() bool {
	rc.syncLock.RLock()
	defer rc.syncLock.RUnlock()
	return !rc.timeOfLastSync.IsZero()
}

func (rc *reconciler) updateLastSyncTime() {
	rc.syncLock.Lock()
	defer rc.syncLock.Unlock()
	rc.timeOfLastSync = time.Now()
}

// mountOrAttachVolumes starts a mount of every volume of the desired state
// that is not mounted yet.
//
// Entry (amd64): RAX=rc.
//
// As in kubelet, each mount is handed to the operation executor, which runs
// it on a goroutine of its own: the volume plugin's SetUp (here: create
// ROOT/pods/<uid>/volumes/<plugin-dir>/<volume> and, for a projected
// kube-api-access volume, write token/ca.crt/namespace files into it), then
// MarkVolumeAsMounted through the ActualStateOfWorldMounterUpdater
// interface. A volume whose operation still runs is skipped (AlreadyExists).
//
// noinline: keep the symbol callable for a probe (ours is small).
//
//go:noinline
func (rc *reconciler) mountOrAttachVolumes() {
	// Ensure volumes that should be attached/mounted are attached/mounted.
	for _, volumeToMount := range rc.desiredStateOfWorld.GetVolumesToMount() {
		volMounted, devicePath, err := rc.actualStateOfWorld.PodExistsInVolume(volumeToMount.PodName, volumeToMount.VolumeName)
		volumeToMount.DevicePath = devicePath
		if err == nil && !volMounted {
			rc.mountAttachedVolumes(volumeToMount)
		}
	}
}

func (rc *reconciler) mountAttachedVolumes(volumeToMount cache.VolumeToMount) {
	// Volume is not mounted: start the mount operation.
	err := rc.operationExecutor.MountVolume(
		rc.waitForAttachTimeout,
		volumeToMount.VolumeToMount,
		rc.actualStateOfWorld,
		false /* isRemount */)
	switch {
	case err == nil:
		rc.startedInLastLoop++
	case nestedpendingoperations.IsAlreadyExists(err):
		// The previous tick's mount still runs (kubelet: an expected error).
	default:
		rc.desiredStateOfWorld.AddErrorToPod(volumeToMount.PodName, err.Error())
	}
}

func (rc *reconciler) monoNow() int64 {
	if rc.gt == nil {
		return 0
	}
	return groundtruth.MonoNow()
}
