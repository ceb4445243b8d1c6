//go:build kubelet136

package pleg

import (
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"k8s.io/kubernetes/internal/groundtruth"
)

// PodLifecycleEventGenerator contains functions for generating pod life cycle events.
type PodLifecycleEventGenerator interface {
	Start()
	Stop()
	Watch() chan *PodLifecycleEvent
	Relist()
	// RequestRelist asks for an on-demand relist of one pod (kubelet
	// 1.36+, feature gate PLEGOnDemandRelist: the pod's SyncPod postSync).
	RequestRelist(podUID types.UID)
}

// Start spawns the goroutine that relists: periodically, and one pod on
// request.
func (g *GenericPLEG) Start() {
	g.runningMu.Lock()
	defer g.runningMu.Unlock()
	if g.isRunning {
		return
	}
	g.isRunning = true
	g.stopCh = make(chan struct{})
	g.done = make(chan struct{})
	// Set 0 to trigger the first relist immediately
	// The RelistPeriod is set after the first relist.
	g.globalRelistTimer = time.NewTimer(0)

	go func() {
		defer close(g.done)
		if g.gt != nil {
			g.goid = groundtruth.Goid()
		}
		for g.workerLoopIteration() {
		}
	}()
}

// Stop stops the relist goroutine and waits for it.
func (g *GenericPLEG) Stop() {
	g.runningMu.Lock()
	defer g.runningMu.Unlock()
	if g.isRunning {
		close(g.stopCh)
		<-g.done
		g.isRunning = false
		g.globalRelistTimer.Stop()
	}
}

// workerLoopIteration is the primary work dispatcher for the PLEG. It uses non-blocking channel
// reads for a prioritized work selection:
// 1. stop: exit the workerLoop if stopCh has been closed.
// 2. global relist: the global relist timer takes priority over single-pod relists.
// 3. single pod relist: execute a request from the single-pod relist queue.
//
// (The ground-truth records around Relist and relistPod are the workload's.)
func (g *GenericPLEG) workerLoopIteration() bool {
	// Use non-blocking selects for prioritized selection.

	// First priority: stopCh
	select {
	case <-g.stopCh:
		return false
	default:
	}

	// Second priority: global Relist
	select {
	case <-g.globalRelistTimer.C:
		g.timedRelist()
		g.globalRelistTimer.Reset(g.relistDuration.RelistPeriod)
		return true
	default:
	}

	// Fallback: blocking select
	select {
	case <-g.stopCh:
		return false
	case <-g.globalRelistTimer.C:
		g.timedRelist()
		g.globalRelistTimer.Reset(g.relistDuration.RelistPeriod)
	case req := <-g.relistRequests:
		if req.timestamp.After(g.getRelistTime()) {
			// The request hasn't already been served by the global relist.
			start := g.monoNow()
			g.relistPod(req.podUID)
			if g.gt != nil {
				g.gt.Add(groundtruth.Record{
					Stage:     "relist_pod",
					PodUID:    string(req.podUID),
					StartMono: start,
					EndMono:   groundtruth.MonoNow(),
					Goid:      g.goid,
				})
			}
		}
	}

	return true
}

// timedRelist is Relist with the workload's ground-truth record around it.
func (g *GenericPLEG) timedRelist() {
	start := g.monoNow()
	g.Relist()
	if g.gt != nil {
		g.gt.Add(groundtruth.Record{
			Stage:     "relist",
			StartMono: start,
			EndMono:   groundtruth.MonoNow(),
			Goid:      g.goid,
			Extra:     []groundtruth.KV{{K: "pods", V: len(g.podRecords)}},
		})
	}
}

// getRelistTime returns the start of the last relist (the PLEG goroutine
// only, which is the one that relists).
func (g *GenericPLEG) getRelistTime() time.Time {
	return g.relistTime
}

// relistPod relists one pod (kubelet 1.36+: requested on demand, e.g. by
// SyncPod's postSync).
//
// Entry (amd64): RAX=g, RBX/RCX=podUID.
//
// noinline: kubelet's is too large to inline; ours is small.
//
//go:noinline
func (g *GenericPLEG) relistPod(podUID types.UID) {
	g.relistLock.Lock()
	defer g.relistLock.Unlock()

	_, err := os.Stat(filepath.Join(g.podsDir, string(podUID)))
	g.reconcilePodRecord(podUID, err == nil)
}

// reconcilePodRecord updates the pod's record and sends its event.
//
//go:noinline
func (g *GenericPLEG) reconcilePodRecord(podUID types.UID, exists bool) {
	if !exists || g.podRecords[podUID] {
		return
	}
	g.podRecords[podUID] = true
	select {
	case g.eventChannel <- &PodLifecycleEvent{ID: podUID, Type: ContainerStarted}:
	default:
		// The event channel is full: kubelet drops the event too.
	}
}

// RequestRelist asks for an on-demand relist of one pod; dropped when the
// queue is full.
func (g *GenericPLEG) RequestRelist(podUID types.UID) {
	select {
	case g.relistRequests <- relistRequest{podUID, time.Now()}:
	default:
	}
}
