package reconciler

import (
	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/kubernetes/internal/groundtruth"
)

// Run starts the reconciler loop: every loopSleepDuration (100 ms in
// kubelet) the closure from reconciliationLoopFunc runs reconcile.
//
// noinline: keep the symbol callable for a probe (it is only started with go
// through an interface, so this is belt and braces).
//
//go:noinline
func (rc *reconciler) Run(stopCh <-chan struct{}) {
	if rc.gt != nil {
		rc.goid = groundtruth.Goid()
	}
	wait.Until(rc.reconciliationLoopFunc(), rc.loopSleepDuration, stopCh)
}

// reconciliationLoopFunc returns the loop body; the closure is the symbol
// "k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler.(*reconciler).reconciliationLoopFunc.func1".
//
// noinline: keeps the closure's name stable across Go versions (inlined,
// Go 1.21-1.26 would name it after the inlining chain, `Run.(*reconciler).
// reconciliationLoopFunc.func1`; kubelet 1.34+ has no such function: its
// closure is `(*reconciler).Run.func1`).
//
//go:noinline
func (rc *reconciler) reconciliationLoopFunc() func() {
	return func() {
		start := rc.monoNow()
		rc.startedInLastLoop = 0
		rc.reconcile()
		if rc.gt != nil {
			end := groundtruth.MonoNow()
			rc.gt.Add(groundtruth.Record{
				Stage:     "reconcile",
				StartMono: start,
				EndMono:   end,
				Goid:      rc.goid,
				Extra:     []groundtruth.KV{{K: "mounts_started", V: rc.startedInLastLoop}},
			})
		}
		// Sync the state with the reality once after all existing pods are added to the desired state from all sources.
		// Otherwise, the reconstruct process may clean up pods' volumes that are still in use because
		// desired state of world does not contain a complete list of pods.
		if rc.populatorHasAddedPods() && !rc.StatesHasBeenSynced() {
			rc.updateLastSyncTime()
		}
	}
}

// reconcile is one reconciler pass (kubelet 1.31-1.33 name; 1.28-1.30 called
// it reconcileNew). Only the mount half exists here: the workload never
// deletes pods.
//
// Entry (amd64): RAX=rc.
//
// noinline: the real function is far too large to inline; ours is small.
//
//go:noinline
func (rc *reconciler) reconcile() {
	// Unmounts are triggered before mounts so that a volume that was
	// referenced by a pod that was deleted and is now referenced by another
	// pod is unmounted from the first pod before being mounted to the new
	// pod. (No pod is ever deleted in the workload.)

	// Next we mount required volumes. This function could also trigger
	// attach if kubelet is responsible for attaching volumes.
	rc.mountOrAttachVolumes()
}
