// Package volumemanager models k8s.io/kubernetes/pkg/kubelet/volumemanager:
// the kubelet volume manager that SyncPod waits on in WaitForAttachAndMount.
package volumemanager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager/cache"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager/populator"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler"
	"k8s.io/kubernetes/pkg/volume/util"
	"k8s.io/kubernetes/pkg/volume/util/operationexecutor"
	"k8s.io/kubernetes/pkg/volume/util/types"
)

// In kubelet these are constants (volume_manager.go). The workload needs
// presets (default/tuned) and per-flag overrides, so they are variables set
// once, before anything starts, by SetIntervals.
var (
	// reconcilerLoopSleepPeriod is the amount of time the reconciler loop waits
	// between successive executions
	reconcilerLoopSleepPeriod = 100 * time.Millisecond

	// desiredStateOfWorldPopulatorLoopSleepPeriod is the amount of time the
	// DesiredStateOfWorldPopulator loop waits between successive executions
	desiredStateOfWorldPopulatorLoopSleepPeriod = 100 * time.Millisecond

	// podAttachAndMountTimeout is the maximum amount of time the
	// WaitForAttachAndMount call will wait for all volumes in the specified pod
	// to be attached and mounted. Even though cloud operations can take several
	// minutes to complete, we set the timeout to 2 minutes because kubelet
	// will retry in the next sync iteration. This frees the associated
	// goroutine of the pod to process newer updates if needed (e.g., a delete
	// request to the pod).
	// Value is slightly offset from 2 minutes to make timeouts due to this
	// constant recognizable.
	podAttachAndMountTimeout = 2*time.Minute + 3*time.Second

	// podAttachAndMountRetryInterval is the amount of time the GetVolumesForPod
	// call waits before retrying
	podAttachAndMountRetryInterval = 300 * time.Millisecond
)

// waitForAttachTimeout is the maximum amount of time a
// operationexecutor.Mount call will wait for a volume to be attached.
// Set to 10 minutes because we've seen attach operations take several
// minutes to complete for some volume plugins in some cases. While this
// operation is waiting it only blocks other operations on the same device,
// other devices are not affected.
const waitForAttachTimeout = 10 * time.Minute

// Intervals holds the loop periods the workload can tune.
type Intervals struct {
	PodAttachAndMountRetryInterval time.Duration
	PodAttachAndMountTimeout       time.Duration
	ReconcilerLoopSleepPeriod      time.Duration
	PopulatorLoopSleepPeriod       time.Duration
}

// SetIntervals overrides the (in kubelet: constant) loop periods. Call it
// before NewVolumeManager.
func SetIntervals(iv Intervals) {
	podAttachAndMountRetryInterval = iv.PodAttachAndMountRetryInterval
	podAttachAndMountTimeout = iv.PodAttachAndMountTimeout
	reconcilerLoopSleepPeriod = iv.ReconcilerLoopSleepPeriod
	desiredStateOfWorldPopulatorLoopSleepPeriod = iv.PopulatorLoopSleepPeriod
}

// VolumeManager runs a set of asynchronous loops that figure out which volumes
// need to be attached/mounted/unmounted/detached based on the pods scheduled on
// this node and makes it so.
type VolumeManager interface {
	// Starts the volume manager and all the asynchronous loops that it controls
	Run(ctx context.Context, sourcesReady config.SourcesReady)

	// WaitForAttachAndMount processes the volumes referenced in the specified
	// pod and blocks until they are all attached and mounted (reflected in
	// actual state of the world).
	// An error is returned if all volumes are not attached and mounted within
	// the duration defined in podAttachAndMountTimeout.
	WaitForAttachAndMount(ctx context.Context, pod *v1.Pod) error
}

// PodManager is the subset of methods the manager needs to observe the actual state of the kubelet.
// See pkg/k8s.io/kubernetes/pkg/kubelet/pod.Manager for method godoc.
type PodManager interface {
	GetPodByUID(k8stypes.UID) (*v1.Pod, bool)
	GetPods() []*v1.Pod
}

// PodStateProvider can determine if a pod is going to be terminated
type PodStateProvider interface {
	ShouldPodContainersBeTerminating(k8stypes.UID) bool
	ShouldPodRuntimeBeRemoved(k8stypes.UID) bool
}

// NewVolumeManager returns a new concrete instance implementing the
// VolumeManager interface.
//
// kubeletPodsDir - the directory under which pod volume directories are
// created (ROOT/pods); gt may be nil.
func NewVolumeManager(
	podManager PodManager,
	podStateProvider PodStateProvider,
	kubeletPodsDir string,
	gt *groundtruth.Recorder) VolumeManager {

	vm := &volumeManager{
		desiredStateOfWorld: cache.NewDesiredStateOfWorld(),
		actualStateOfWorld:  cache.NewActualStateOfWorld(),
		gt:                  gt,
	}
	vm.desiredStateOfWorldPopulator = populator.NewDesiredStateOfWorldPopulator(
		desiredStateOfWorldPopulatorLoopSleepPeriod,
		podManager,
		podStateProvider,
		vm.desiredStateOfWorld,
		vm.actualStateOfWorld,
		gt)
	vm.operationExecutor = operationexecutor.NewOperationExecutor(
		operationexecutor.NewOperationGenerator(kubeletPodsDir, vm.desiredStateOfWorld.AddErrorToPod, gt))
	vm.reconciler = reconciler.NewReconciler(
		reconcilerLoopSleepPeriod,
		waitForAttachTimeout,
		vm.desiredStateOfWorld,
		vm.actualStateOfWorld,
		vm.desiredStateOfWorldPopulator.HasAddedPods,
		vm.operationExecutor,
		gt)
	return vm
}

// volumeManager implements the VolumeManager interface
type volumeManager struct {
	// desiredStateOfWorld is a data structure containing the desired state of
	// the world according to the volume manager: i.e. what volumes should be
	// attached and which pods are referencing the volumes).
	// The data structure is populated by the desired state of the world
	// populator using the kubelet pod manager.
	desiredStateOfWorld cache.DesiredStateOfWorld

	// actualStateOfWorld is a data structure containing the actual state of
	// the world according to the manager: i.e. which volumes are attached to
	// this node and what pods the volumes are mounted to.
	// The data structure is populated upon successful completion of attach,
	// detach, mount, and unmount actions triggered by the reconciler.
	actualStateOfWorld cache.ActualStateOfWorld

	// reconciler runs an asynchronous periodic loop to reconcile the
	// desiredStateOfWorld with the actualStateOfWorld by triggering attach,
	// detach, mount, and unmount operations using the operationExecutor.
	reconciler reconciler.Reconciler

	// desiredStateOfWorldPopulator runs an asynchronous periodic loop to
	// populate the desiredStateOfWorld using the kubelet PodManager.
	desiredStateOfWorldPopulator populator.DesiredStateOfWorldPopulator

	// operationExecutor is used to start asynchronous mount operations
	// (each on a goroutine of its own).
	operationExecutor operationexecutor.OperationExecutor

	// gt receives the workload's ground-truth records (nil: none).
	gt *groundtruth.Recorder
}

func (vm *volumeManager) Run(ctx context.Context, sourcesReady config.SourcesReady) {
	defer runtime.HandleCrash()

	go vm.desiredStateOfWorldPopulator.Run(ctx, sourcesReady)

	go vm.reconciler.Run(ctx.Done())

	<-ctx.Done()
}

// WaitForAttachAndMount blocks until every volume of pod is mounted, polling
// every podAttachAndMountRetryInterval (immediate first check).
//
// Entry (amd64): RAX=vm, RBX/RCX=ctx (itab, data), RDI=pod. Returns error in RAX/RBX.
//
// noinline: the real function is far too large to inline; ours is smaller,
// and an inlined copy would never fire a uprobe at this symbol.
//
//go:noinline
func (vm *volumeManager) WaitForAttachAndMount(ctx context.Context, pod *v1.Pod) error {
	defer groundtruth.Enter(ctx, groundtruth.InMountWait)() // the workload's, not kubelet's
	if pod == nil {
		return nil
	}

	expectedVolumes := getExpectedVolumes(pod)
	if len(expectedVolumes) == 0 {
		// No volumes to verify
		return nil
	}

	uniquePodName := util.GetUniquePodName(pod)

	// Some pods expect to have Setup called over and over again to update.
	// Remount plugins for which this is true. (Atomically updating volumes,
	// like Downward API, depend on this to update the contents of the volume).
	vm.desiredStateOfWorldPopulator.ReprocessPod(uniquePodName)

	err := wait.PollUntilContextTimeout(
		ctx,
		podAttachAndMountRetryInterval,
		podAttachAndMountTimeout,
		true,
		vm.verifyVolumesMountedFunc(uniquePodName, expectedVolumes))

	if err != nil {
		start := vm.monoNow()
		unmountedVolumes :=
			vm.getUnmountedVolumes(uniquePodName, expectedVolumes)
		if vm.gt != nil {
			// Not a poll tick, but a getUnmountedVolumes call a tracer sees.
			vm.gt.Add(groundtruth.Record{
				Stage:     "poll_check",
				PodUID:    string(uniquePodName),
				PodName:   pod.Name,
				Namespace: pod.Namespace,
				StartMono: start,
				EndMono:   groundtruth.MonoNow(),
				Goid:      groundtruth.GoidFrom(ctx),
				Extra: []groundtruth.KV{
					{K: "unmounted", V: len(unmountedVolumes)},
					{K: "after_error", V: true},
				},
			})
		}
		// Also get unattached volumes and volumes not in dsw for error message
		unattachedVolumes :=
			vm.getUnattachedVolumes(uniquePodName)
		volumesNotInDSW :=
			vm.getVolumesNotInDSW(uniquePodName, expectedVolumes)

		if len(unmountedVolumes) == 0 {
			return nil
		}

		return fmt.Errorf(
			"unmounted volumes=%v, unattached volumes=%v, failed to process volumes=%v: %w",
			unmountedVolumes,
			unattachedVolumes,
			volumesNotInDSW,
			err)
	}

	return nil
}

func (vm *volumeManager) getVolumesNotInDSW(uniquePodName types.UniquePodName, expectedVolumes []string) []string {
	volumesNotInDSW := sets.New(expectedVolumes...)

	for _, volumeToMount := range vm.desiredStateOfWorld.GetVolumesToMount() {
		if volumeToMount.PodName == uniquePodName {
			volumesNotInDSW.Delete(volumeToMount.OuterVolumeSpecName)
		}
	}

	return sets.List(volumesNotInDSW)
}

// getUnattachedVolumes returns a list of the volumes that are expected to be attached but
// are not currently attached to the node
func (vm *volumeManager) getUnattachedVolumes(uniquePodName types.UniquePodName) []string {
	unattachedVolumes := []string{}
	for _, volumeToMount := range vm.desiredStateOfWorld.GetVolumesToMount() {
		if volumeToMount.PodName == uniquePodName &&
			volumeToMount.PluginIsAttachable &&
			!vm.actualStateOfWorld.VolumeExists(volumeToMount.VolumeName) {
			unattachedVolumes = append(unattachedVolumes, volumeToMount.OuterVolumeSpecName)
		}
	}
	sort.Strings(unattachedVolumes)

	return unattachedVolumes
}

// verifyVolumesMountedFunc returns a method that returns true when all expected
// volumes are mounted. The returned closure is the symbol
// "k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).verifyVolumesMountedFunc.func1",
// called once per poll tick by wait.PollUntilContextTimeout. At its entry
// (amd64) RDX is the closure context, RAX/RBX the ctx; it returns done in AL
// and err in RBX/RCX.
//
func (vm *volumeManager) verifyVolumesMountedFunc(podName types.UniquePodName, expectedVolumes []string) wait.ConditionWithContextFunc {
	return func(ctx context.Context) (done bool, err error) {
		if errs := vm.desiredStateOfWorld.PopPodErrors(podName); len(errs) > 0 {
			return true, errors.New(strings.Join(errs, "; "))
		}
		// Ground truth: time getUnmountedVolumes from the caller, record after
		// it returned (the probed function itself is left untouched).
		start := vm.monoNow()
		unmounted := vm.getUnmountedVolumes(podName, expectedVolumes)
		if vm.gt != nil {
			end := groundtruth.MonoNow()
			vm.gt.Add(groundtruth.Record{
				Stage:     "poll_check",
				PodUID:    string(podName),
				PodName:   podNameOf(ctx),
				Namespace: podNamespaceOf(ctx),
				StartMono: start,
				EndMono:   end,
				Goid:      groundtruth.GoidFrom(ctx),
				Extra:     []groundtruth.KV{{K: "unmounted", V: len(unmounted)}},
			})
		}
		return len(unmounted) == 0, nil
	}
}

func (vm *volumeManager) monoNow() int64 {
	if vm.gt == nil {
		return 0
	}
	return groundtruth.MonoNow()
}

// getUnmountedVolumes fetches the current list of mounted volumes from
// the actual state of the world, and uses it to process the list of
// expectedVolumes. It returns a list of unmounted volumes.
// The list also includes volume that may be mounted in uncertain state.
//
// Entry (amd64): RAX=vm, RBX=podName.ptr, RCX=podName.len (podName is the pod
// UID), RDI/RSI/R8=expectedVolumes. Returns []string in RAX (ptr), RBX (len
// = number of volumes still unmounted), RCX (cap).
//
// noinline: small enough to be inlined into the closure above; the real one
// is not (it builds a set and sorts).
//
//go:noinline
func (vm *volumeManager) getUnmountedVolumes(podName types.UniquePodName, expectedVolumes []string) []string {
	mountedVolumes := sets.New[string]()
	for _, mountedVolume := range vm.actualStateOfWorld.GetMountedVolumesForPod(podName) {
		mountedVolumes.Insert(mountedVolume.OuterVolumeSpecName)
	}
	return filterUnmountedVolumes(mountedVolumes, expectedVolumes)
}

// filterUnmountedVolumes adds each element of expectedVolumes that is not in
// mountedVolumes to a list of unmountedVolumes and returns it.
func filterUnmountedVolumes(mountedVolumes sets.Set[string], expectedVolumes []string) []string {
	unmountedVolumes := []string{}
	for _, expectedVolume := range expectedVolumes {
		if !mountedVolumes.Has(expectedVolume) {
			unmountedVolumes = append(unmountedVolumes, expectedVolume)
		}
	}
	sort.Strings(unmountedVolumes)

	return unmountedVolumes
}

// getExpectedVolumes returns a list of volumes that must be mounted in order to
// consider the volume setup step for this pod satisfied.
func getExpectedVolumes(pod *v1.Pod) []string {
	mounts, devices := util.GetPodVolumeNames(pod)
	return mounts.Union(devices).UnsortedList()
}

// Pod name/namespace for ground-truth records made below WaitForAttachAndMount
// (which only knows the pod UID) travel in the context.
type podRefKey struct{}

type podRef struct{ name, namespace string }

// WithPodRef returns ctx carrying the pod's name and namespace for
// ground-truth records.
func WithPodRef(ctx context.Context, pod *v1.Pod) context.Context {
	return context.WithValue(ctx, podRefKey{}, podRef{pod.Name, pod.Namespace})
}

func podNameOf(ctx context.Context) string {
	if r, ok := ctx.Value(podRefKey{}).(podRef); ok {
		return r.name
	}
	return ""
}

func podNamespaceOf(ctx context.Context) string {
	if r, ok := ctx.Value(podRefKey{}).(podRef); ok {
		return r.namespace
	}
	return ""
}
