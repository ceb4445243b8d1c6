//go:build kubelet136

package pleg

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"k8s.io/kubernetes/internal/groundtruth"
)

// kubelet 1.36's PLEG: one goroutine relists every period and, in between,
// serves on-demand requests for one pod with relistPod (recorded as
// relist_pod with the pod's UID, on the same goroutine as the relists).
func TestOnDemandRelistRunsOnThePLEGGoroutine(t *testing.T) {
	dir := t.TempDir()
	gt := groundtruth.NewRecorder()
	events := make(chan *PodLifecycleEvent, 10)
	g := NewGenericPLEG(dir, events, &RelistDuration{RelistPeriod: time.Hour, RelistThreshold: time.Hour}, gt)
	g.Start()
	// The first relist runs at once; wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for len(stages(gt, "relist")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no first relist")
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.MkdirAll(filepath.Join(dir, "uid-1"), 0750); err != nil {
		t.Fatal(err)
	}
	g.RequestRelist(types.UID("uid-1"))
	select {
	case ev := <-events:
		if ev.ID != "uid-1" {
			t.Errorf("event for %q", ev.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the on-demand relist sent no event")
	}
	g.Stop()
	relists, pods := stages(gt, "relist"), stages(gt, "relist_pod")
	if len(relists) != 1 || len(pods) != 1 {
		t.Fatalf("%d relists, %d on-demand relists; want 1 and 1", len(relists), len(pods))
	}
	if pods[0].PodUID != "uid-1" || pods[0].Goid == 0 || pods[0].Goid != relists[0].Goid {
		t.Errorf("relist_pod %+v, relist on goroutine %d", pods[0], relists[0].Goid)
	}
}

func stages(gt *groundtruth.Recorder, stage string) []groundtruth.Record {
	var out []groundtruth.Record
	for _, r := range gt.Records() {
		if r.Stage == stage {
			out = append(out, r)
		}
	}
	return out
}
