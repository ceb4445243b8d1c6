// Package pleg models k8s.io/kubernetes/pkg/kubelet/pleg: the pod lifecycle
// event generator whose relist runs every second in kubelet.
package pleg

import (
	"os"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

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

// PodLifecycleEventGenerator contains functions for generating pod life cycle events.
type PodLifecycleEventGenerator interface {
	Start()
	Stop()
	Watch() chan *PodLifecycleEvent
	Relist()
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
		gt:             gt,
	}
}

// Watch returns a channel from which the subscriber can receive PodLifecycleEvent events.
func (g *GenericPLEG) Watch() chan *PodLifecycleEvent {
	return g.eventChannel
}

// Start spawns a goroutine to relist periodically.
func (g *GenericPLEG) Start() {
	g.runningMu.Lock()
	defer g.runningMu.Unlock()
	if !g.isRunning {
		g.isRunning = true
		g.stopCh = make(chan struct{})
		g.done = make(chan struct{})
		go func() {
			defer close(g.done)
			if g.gt != nil {
				g.goid = groundtruth.Goid()
			}
			// kubelet: go wait.Until(g.Relist, g.relistDuration.RelistPeriod, g.stopCh)
			// The closure only adds the ground-truth record around Relist.
			wait.Until(func() {
				start := g.monoNow()
				g.Relist()
				if g.gt != nil {
					end := groundtruth.MonoNow()
					g.gt.Add(groundtruth.Record{
						Stage:     "relist",
						StartMono: start,
						EndMono:   end,
						Goid:      g.goid,
						Extra:     []groundtruth.KV{{K: "pods", V: len(g.podRecords)}},
					})
				}
			}, g.relistDuration.RelistPeriod, g.stopCh)
		}()
	}
}

// Stop stops the relist goroutine and waits for it.
func (g *GenericPLEG) Stop() {
	g.runningMu.Lock()
	defer g.runningMu.Unlock()
	if g.isRunning {
		close(g.stopCh)
		<-g.done
		g.isRunning = false
	}
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
