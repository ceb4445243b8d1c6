//go:build !kubelet136

package pleg

import (
	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/kubernetes/internal/groundtruth"
)

// PodLifecycleEventGenerator contains functions for generating pod life cycle events.
type PodLifecycleEventGenerator interface {
	Start()
	Stop()
	Watch() chan *PodLifecycleEvent
	Relist()
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

