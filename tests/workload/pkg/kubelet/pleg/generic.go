// Package pleg models k8s.io/kubernetes/pkg/kubelet/pleg: the pod lifecycle
// event generator whose relist runs every second in kubelet. How the relist
// is driven depends on the version (build tag kubelet136): generic_v135.go
// (wait.Until(Relist), kubelet <= 1.35) or generic_v136.go
// (workerLoopIteration: the periodic Relist and on-demand relistPod).
package pleg

import (
	"os"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"k8s.io/kubernetes/internal/groundtruth"
)

// PodLifeCycleEventType define the event type of pod life cycle events.
type PodLifeCycleEventType string

const (
	// ContainerStarted - event type when the new state of container is running.
	ContainerStarted PodLifeCycleEventType = "ContainerStarted"
)

// PodLifecycleEvent is an event that reflects the change of the pod state.
type PodLifecycleEvent struct {
	// The pod ID.
	ID types.UID
	// The type of the event.
	Type PodLifeCycleEventType
	// The accompanied data which varies based on the event type.
	Data interface{}
}

// RelistDuration holds the relist period and threshold.
type RelistDuration struct {
	// The period for relisting.
	RelistPeriod time.Duration
	// The relisting threshold needs to be greater than the relisting period +
	// the relisting time, which can vary significantly. Set a conservative
	// threshold to avoid flipping between healthy and unhealthy.
	RelistThreshold time.Duration
}

// GenericPLEG is an extremely simple generic PLEG that relies solely on
// periodic listing to discover container changes. Here the "runtime" it lists
// is the set of pod directories under ROOT/pods.
type GenericPLEG struct {
	// The container runtime's view: pod directories.
	podsDir string
	// The channel from which the subscriber listens events.
	eventChannel chan *PodLifecycleEvent
	// The internal cache for pod/container information.
	podRecords map[types.UID]bool
	// Time of the last relisting.
	relistTime time.Time
	// Lock to avoid updating the pod records while they are being read.
	relistLock sync.Mutex
	// Indicates if the Generic PLEG is running or not.
	isRunning bool
	// Locks the start/stop operation of Generic PLEG.
	runningMu sync.Mutex
	// Indicates relisting related parameters.
	relistDuration *RelistDuration
	// stopCh stops the relist goroutine.
	stopCh chan struct{}
	// done is closed when the relist goroutine has returned.
	done chan struct{}
	// globalRelistTimer fires the periodic relist (kubelet 1.36+'s
	// workerLoopIteration; before, wait.Until drives Relist).
	globalRelistTimer *time.Timer
	// relistRequests holds on-demand single-pod relist requests (1.36+).
	relistRequests chan relistRequest

	gt   *groundtruth.Recorder
	goid int64
}

// NewGenericPLEG instantiates a new GenericPLEG object and return it.
func NewGenericPLEG(podsDir string, eventChannel chan *PodLifecycleEvent, relistDuration *RelistDuration, gt *groundtruth.Recorder) PodLifecycleEventGenerator {
	return &GenericPLEG{
		podsDir:        podsDir,
		eventChannel:   eventChannel,
		podRecords:     make(map[types.UID]bool),
		relistDuration: relistDuration,
		relistRequests: make(chan relistRequest, relistRequestsCapacity),
		gt:             gt,
	}
}

// relistRequest is an on-demand relist of one pod (kubelet 1.36+).
type relistRequest struct {
	podUID    types.UID
	timestamp time.Time
}

// relistRequestsCapacity: kubelet's (a request is dropped when it is full).
const relistRequestsCapacity = 1000

// Watch returns a channel from which the subscriber can receive PodLifecycleEvent events.
func (g *GenericPLEG) Watch() chan *PodLifecycleEvent {
	return g.eventChannel
}

func (g *GenericPLEG) monoNow() int64 {
	if g.gt == nil {
		return 0
	}
	return groundtruth.MonoNow()
}

// Relist queries the container runtime for list of pods/containers, compare
// with the internal pods/containers, and generates events accordingly.
//
// Entry (amd64): RAX=g.
//
// noinline: kubelet's is far too large to inline; ours is small.
//
//go:noinline
func (g *GenericPLEG) Relist() {
	g.relistLock.Lock()
	defer g.relistLock.Unlock()

	timestamp := time.Now()
	entries, err := os.ReadDir(g.podsDir)
	if err != nil {
		return
	}
	g.relistTime = timestamp

	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		uid := types.UID(e.Name())
		if g.podRecords[uid] {
			continue
		}
		g.podRecords[uid] = true
		select {
		case g.eventChannel <- &PodLifecycleEvent{ID: uid, Type: ContainerStarted}:
		default:
			// The event channel is full: kubelet drops the event too
			// ("The event channel is full, discarding this event").
		}
	}
}
