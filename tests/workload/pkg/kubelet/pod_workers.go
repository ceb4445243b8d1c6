package kubelet

import (
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/runtime"

	"k8s.io/kubernetes/internal/groundtruth"
	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager"
)

// UpdatePodOptions is an options struct to pass to a UpdatePod operation.
type UpdatePodOptions struct {
	// The type of update (create, update, sync, kill).
	UpdateType kubetypes.SyncPodType
	// StartTime is an optional timestamp for when this update was created. If set,
	// when this update is fully realized by the pod worker it will be recorded in
	// the PodWorkerDuration metric.
	StartTime time.Time
	// Pod to update. Required.
	Pod *v1.Pod
	// MirrorPod is the mirror pod if Pod is a static pod. Optional when UpdateType
	// is kill or terminated.
	MirrorPod *v1.Pod
}

// PodWorkers is an abstract interface for testability.
type PodWorkers interface {
	// UpdatePod notifies the pod worker of a change to a pod, which will then
	// be processed in FIFO order by a goroutine per pod UID.
	UpdatePod(options UpdatePodOptions)
	// ShouldPodContainersBeTerminating returns false before pod workers have synced,
	// or once a pod has started terminating.
	ShouldPodContainersBeTerminating(uid types.UID) bool
	// ShouldPodRuntimeBeRemoved returns true if runtime managers within the Kubelet
	// should aggressively cleanup pod resources that are not containers or on disk
	// content, like attached volumes.
	ShouldPodRuntimeBeRemoved(uid types.UID) bool
	// Stop closes every pod worker's update channel and waits for the workers.
	Stop()
}

// podSyncStatus tracks per-pod transitions through the three phases of pod
// worker sync (setup, terminating, terminated).
type podSyncStatus struct {
	// ctx is the context that is associated with the current pod sync.
	ctx context.Context
	// cancelFn if set is expected to cancel the current podSyncer operation.
	cancelFn context.CancelFunc
	// working is true if an update is pending or being worked by a pod worker
	// goroutine.
	working bool
	// pendingUpdate is the updated state the pod worker should observe. It is
	// cleared and moved to activeUpdate when a pod worker reads it.
	pendingUpdate *UpdatePodOptions
	// activeUpdate is the most recent version of the pod's state that will be
	// passed to a sync*Pod function.
	activeUpdate *UpdatePodOptions
	// syncedAt is the time at which the pod worker first observed this pod.
	syncedAt time.Time
}

// podWork is what startPodSync hands to the worker loop.
type podWork struct {
	Options UpdatePodOptions
}

// SyncDoneFunc is told when a pod's SyncPod returned (a workload hook: in
// kubelet, completion shows up as status-manager updates).
type SyncDoneFunc func(pod *v1.Pod, isTerminal bool, err error)

type podWorkers struct {
	// Protects all per worker fields.
	podLock sync.Mutex
	// podUpdates is a map from pod UID to a channel that signals the pod
	// worker to process an update.
	podUpdates map[types.UID]chan struct{}
	// Tracks by UID the termination status of a pod - syncing, terminating,
	// terminated, and evicted.
	podSyncStatuses map[types.UID]*podSyncStatus

	// podSyncer is the kubelet (its SyncPod is what the worker calls).
	podSyncer podSyncer

	// podCache stores kubecontainer.PodStatus for all pods.
	podCache kubecontainer.Cache

	// workers tracks running worker goroutines (for Stop).
	workers sync.WaitGroup
	stopped bool

	onSyncDone SyncDoneFunc
	gt         *groundtruth.Recorder
}

func newPodWorkers(
	podSyncer podSyncer,
	podCache kubecontainer.Cache,
	onSyncDone SyncDoneFunc,
	gt *groundtruth.Recorder,
) PodWorkers {
	return &podWorkers{
		podSyncStatuses: map[types.UID]*podSyncStatus{},
		podUpdates:      map[types.UID]chan struct{}{},
		podSyncer:       podSyncer,
		podCache:        podCache,
		onSyncDone:      onSyncDone,
		gt:              gt,
	}
}

func (p *podWorkers) ShouldPodContainersBeTerminating(uid types.UID) bool {
	// A pod that is not known is not terminating; no pod is ever deleted here.
	return false
}

func (p *podWorkers) ShouldPodRuntimeBeRemoved(uid types.UID) bool {
	p.podLock.Lock()
	defer p.podLock.Unlock()
	_, known := p.podSyncStatuses[uid]
	// Pods the workers have never seen may be cleaned up.
	return !known
}

// UpdatePod carries a configuration change or termination state to a pod. A pod is either runnable,
// terminating, or terminated, and will transition to terminating if: deleted on the apiserver,
// discovered to have a terminal phase (Succeeded or Failed), or evicted by the kubelet.
func (p *podWorkers) UpdatePod(options UpdatePodOptions) {
	pod := options.Pod
	uid := pod.UID

	p.podLock.Lock()
	defer p.podLock.Unlock()
	if p.stopped {
		return
	}

	// decide what to do with this pod - we are either setting it up, tearing it down, or ignoring it
	now := time.Now()
	status, ok := p.podSyncStatuses[uid]
	if !ok {
		status = &podSyncStatus{
			syncedAt: now,
		}
		p.podSyncStatuses[uid] = status
	}

	// start the pod worker goroutine if it doesn't exist
	podUpdates, exists := p.podUpdates[uid]
	if !exists {
		// buffer the channel to avoid blocking this method
		podUpdates = make(chan struct{}, 1)
		p.podUpdates[uid] = podUpdates

		// spawn a pod worker
		p.workers.Add(1)
		go func() {
			defer p.workers.Done()
			defer runtime.HandleCrash()
			p.podWorkerLoop(uid, podUpdates)
		}()
	}

	// notify the pod worker there is a pending update
	status.pendingUpdate = &options
	status.working = true
	select {
	case podUpdates <- struct{}{}:
	default:
	}
}

// startPodSync is invoked by each pod worker goroutine when a message arrives on the pod update channel.
// This method consumes a pending update, initializes a context, decides whether the pod is already
// started or can be started, and updates the cached pod state so that downstream components can
// observe what the pod worker goroutine is currently attempting to do.
func (p *podWorkers) startPodSync(podUID types.UID) (ctx context.Context, update podWork, canStart bool, canEverStart bool, ok bool) {
	p.podLock.Lock()
	defer p.podLock.Unlock()

	// verify we are known to the pod worker still
	status, ok := p.podSyncStatuses[podUID]
	if !ok {
		// pod status has disappeared, the worker should exit
		return nil, update, false, false, false
	}
	if !status.working {
		// working is used by unit tests to observe whether a worker is currently acting on this pod
		return nil, update, false, false, false
	}
	if status.pendingUpdate == nil {
		return nil, update, false, false, false
	}
	status.activeUpdate = status.pendingUpdate
	status.pendingUpdate = nil
	update.Options = *status.activeUpdate

	if status.ctx == nil || status.ctx.Err() == context.Canceled {
		status.ctx, status.cancelFn = context.WithCancel(context.Background())
	}
	return status.ctx, update, true, true, true
}

// podWorkerLoop manages sequential state updates to a pod in a goroutine, exiting once the final
// state is reached. The loop is responsible for driving the pod through four main phases:
//
// 1. Wait to start, guaranteeing no two pods with the same UID or same fullname are running at the same time
// 2. Sync, orchestrating pod setup by reconciling the desired pod spec with the runtime state of the pod
// 3. Terminating, ensuring all running containers in the pod are stopped
// 4. Terminated, cleaning up any resources that must be released before the pod can be deleted
//
// (Only phase 2 exists in the workload.) One goroutine per pod UID.
//
// Entry (amd64): RAX=p, RBX/RCX=podUID (string), RDI=podUpdates.
//
// noinline: kubelet's is far too large to inline; ours is smaller.
//
//go:noinline
func (p *podWorkers) podWorkerLoop(podUID types.UID, podUpdates <-chan struct{}) {
	var lastSyncTime time.Time
	goid := int64(0)
	if p.gt != nil {
		goid = groundtruth.Goid()
	}
	for range podUpdates {
		ctx, update, canStart, canEverStart, ok := p.startPodSync(podUID)
		// If we had no update waiting, it means someone initialized the channel without filling out pendingUpdate.
		if !ok {
			continue
		}
		// If the pod was terminated prior to the pod being allowed to start, we exit the loop.
		if !canEverStart {
			return
		}
		// If the pod is not yet ready to start, continue and wait for more updates.
		if !canStart {
			continue
		}

		var isTerminal bool
		err := func() error {
			// The worker is responsible for ensuring the sync method sees the appropriate
			// status updates on resyncs (the result of the last sync), transitions to
			// terminating (no wait), or on terminated (whatever the most recent state is).
			// Only syncing and terminating can generate pod status changes, while terminated
			// pods ensure the most recent status makes it to the api server.
			status, err := p.podCache.GetNewerThan(update.Options.Pod.UID, lastSyncTime)
			if err != nil {
				return err
			}

			// Ground-truth plumbing (the workload's, not kubelet's): the
			// goroutine id and the pod's name travel in ctx so that records
			// made further down this goroutine can be tagged cheaply.
			if p.gt != nil {
				ctx = groundtruth.ContextWithGoid(ctx, goid)
				ctx = groundtruth.WithInner(ctx)
				ctx = volumemanager.WithPodRef(ctx, update.Options.Pod)
			}

			start := p.monoNow()
			var postSync func()
			isTerminal, postSync, err = p.syncPod(ctx, update.Options.UpdateType, update.Options.Pod, update.Options.MirrorPod, status)
			if p.gt != nil {
				end := groundtruth.MonoNow()
				p.gt.AddStage(ctx, "sync", groundtruth.InSync, update.Options.Pod, start, end,
					groundtruth.KV{K: "update_type", V: update.Options.UpdateType.String()},
					groundtruth.KV{K: "error", V: groundtruth.ErrString(err)})
			}

			lastSyncTime = time.Now()
			if postSync != nil {
				postSync()
			}
			return err
		}()

		if p.onSyncDone != nil {
			p.onSyncDone(update.Options.Pod, isTerminal, err)
		}
		p.completeWork(podUID, err)
	}
}

// completeWork marks the pod worker idle (no requeue with backoff here).
func (p *podWorkers) completeWork(podUID types.UID, syncErr error) {
	p.podLock.Lock()
	defer p.podLock.Unlock()
	if status, ok := p.podSyncStatuses[podUID]; ok {
		status.working = status.pendingUpdate != nil
	}
}

func (p *podWorkers) monoNow() int64 {
	if p.gt == nil {
		return 0
	}
	return groundtruth.MonoNow()
}

// Stop closes every worker's channel and waits for the workers to return.
func (p *podWorkers) Stop() {
	p.podLock.Lock()
	if !p.stopped {
		p.stopped = true
		for uid, ch := range p.podUpdates {
			close(ch)
			if s := p.podSyncStatuses[uid]; s != nil && s.cancelFn != nil {
				s.cancelFn()
			}
		}
	}
	p.podLock.Unlock()
	p.workers.Wait()
}
