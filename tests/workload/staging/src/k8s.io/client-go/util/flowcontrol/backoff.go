// Package flowcontrol is the subset of k8s.io/client-go/util/flowcontrol the
// podtrace workload needs: kubelet passes a *Backoff (its crash-loop backoff)
// to the runtime manager's SyncPod.
package flowcontrol

import (
	"sync"
	"time"
)

type backoffEntry struct {
	backoff    time.Duration
	lastUpdate time.Time
}

// Backoff tracks per-item exponential backoff.
type Backoff struct {
	sync.RWMutex
	defaultDuration time.Duration
	maxDuration     time.Duration
	perItemBackoff  map[string]*backoffEntry
}

// NewBackOff returns a Backoff with the given initial and maximum durations.
func NewBackOff(initial, max time.Duration) *Backoff {
	return &Backoff{
		defaultDuration: initial,
		maxDuration:     max,
		perItemBackoff:  map[string]*backoffEntry{},
	}
}

// IsInBackOffSince returns true if the elapsed time since eventTime is
// smaller than the current backoff window for id.
func (p *Backoff) IsInBackOffSince(id string, eventTime time.Time) bool {
	p.RLock()
	defer p.RUnlock()
	entry, ok := p.perItemBackoff[id]
	if !ok {
		return false
	}
	return time.Since(eventTime) < entry.backoff
}

// Next moves id to the next backoff step.
func (p *Backoff) Next(id string, eventTime time.Time) {
	p.Lock()
	defer p.Unlock()
	entry, ok := p.perItemBackoff[id]
	if !ok {
		entry = &backoffEntry{backoff: p.defaultDuration}
		p.perItemBackoff[id] = entry
	} else if entry.backoff*2 < p.maxDuration {
		entry.backoff *= 2
	} else {
		entry.backoff = p.maxDuration
	}
	entry.lastUpdate = eventTime
}
