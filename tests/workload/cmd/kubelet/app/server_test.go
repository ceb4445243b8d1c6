package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

type rec map[string]interface{}

func (r rec) s(k string) string { v, _ := r[k].(string); return v }
func (r rec) n(k string) int64 {
	v, _ := r[k].(json.Number)
	n, _ := v.Int64()
	return n
}

// End to end: tuned preset, 3 pods; every stage is recorded for every pod
// and the records nest the way the calls do.
func TestRunGroundTruth(t *testing.T) {
	dir := t.TempDir()
	gtPath := filepath.Join(dir, "gt.jsonl")
	code := Run([]string{"--preset", "tuned", "--pods", "3", "--rate", "20", "--volumes", "3",
		"--root", filepath.Join(dir, "root"), "--ground-truth", gtPath, "--linger", "50ms"})
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	f, err := os.Open(gtPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []rec
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r rec
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber() // unix ns do not fit a float64
		if err := d.Decode(&r); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 || recs[0].s("stage") != "config" {
		t.Fatal("first record is not config")
	}
	if recs[0].n("poll_interval_ns") != 30e6 || recs[0].n("reconciler_period_ns") != 10e6 {
		t.Errorf("config: %v", recs[0])
	}
	byPod := map[string]map[string][]rec{}
	loops := map[string]int{}
	loopGoids := map[string]map[int64]bool{}
	for _, r := range recs[1:] {
		uid := r.s("pod_uid")
		if uid == "" {
			loops[r.s("stage")]++
			if loopGoids[r.s("stage")] == nil {
				loopGoids[r.s("stage")] = map[int64]bool{}
			}
			loopGoids[r.s("stage")][r.n("goid")] = true
			continue
		}
		if byPod[uid] == nil {
			byPod[uid] = map[string][]rec{}
		}
		byPod[uid][r.s("stage")] = append(byPod[uid][r.s("stage")], r)
		if r.n("end_mono_ns") < r.n("start_mono_ns") {
			t.Errorf("record ends before it starts: %v", r)
		}
		if r.n("start_unix_ns")-r.n("start_mono_ns") != recs[0].n("unix_minus_mono_ns") {
			t.Errorf("unix/mono offset inconsistent: %v", r)
		}
	}
	for _, st := range []string{"reconcile", "populate", "relist"} {
		if loops[st] == 0 {
			t.Errorf("no %s records", st)
		}
	}
	if len(byPod) != 3 {
		t.Fatalf("%d pods in ground truth, want 3", len(byPod))
	}
	within := func(inner, outer rec) bool {
		return inner.n("start_mono_ns") >= outer.n("start_mono_ns") && inner.n("end_mono_ns") <= outer.n("end_mono_ns")
	}
	for uid, st := range byPod {
		for _, s := range []string{"pod_added", "sync", "mount_wait", "runtime_sync", "create_sandbox", "start_container"} {
			if len(st[s]) != 1 {
				t.Fatalf("pod %s: %d %s records, want 1", uid, len(st[s]), s)
			}
		}
		sync, mw, rs := st["sync"][0], st["mount_wait"][0], st["runtime_sync"][0]
		if !within(mw, sync) || !within(rs, sync) || !within(st["create_sandbox"][0], rs) || !within(st["start_container"][0], rs) {
			t.Errorf("pod %s: records do not nest", uid)
		}
		if mw.n("end_mono_ns") > rs.n("start_mono_ns") {
			t.Errorf("pod %s: mount_wait ends after runtime_sync starts", uid)
		}
		if int(mw.n("poll_checks")) != len(st["poll_check"]) || len(st["poll_check"]) == 0 {
			t.Errorf("pod %s: poll_checks %d, %d poll_check records", uid, mw.n("poll_checks"), len(st["poll_check"]))
		}
		last := st["poll_check"][len(st["poll_check"])-1]
		if last.n("unmounted") != 0 {
			t.Errorf("pod %s: last poll check found %d unmounted", uid, last.n("unmounted"))
		}
		if len(st["volume_mounted"]) != 3 {
			t.Errorf("pod %s: %d volume_mounted records, want 3", uid, len(st["volume_mounted"]))
		}
		for _, vm := range st["volume_mounted"] {
			if vm.n("start_mono_ns") > last.n("start_mono_ns") {
				t.Errorf("pod %s: volume %s mounted after the last poll check", uid, vm.s("volume"))
			}
		}
		if sync.n("goid") == 0 || sync.n("goid") != mw.n("goid") {
			t.Errorf("pod %s: sync goid %d, mount_wait goid %d", uid, sync.n("goid"), mw.n("goid"))
		}
		// As in kubelet, the mounts run on the operation executor's
		// goroutines: neither the pod worker's nor the reconciler's.
		for _, vm := range st["volume_mounted"] {
			if g := vm.n("goid"); g == 0 || g == sync.n("goid") || loopGoids["reconcile"][g] {
				t.Errorf("pod %s: volume %s marked mounted on goroutine %d (sync %d, reconciler %v)", uid, vm.s("volume"), g, sync.n("goid"), loopGoids["reconcile"])
			}
		}
		// kubelet 1.36: the sync's postSync asks PLEG for an on-demand
		// relist of the pod, which runs on PLEG's goroutine after the sync.
		switch shape := recs[0].s("kubelet_shape"); shape {
		case "1.36":
			rp := st["relist_pod"]
			if len(rp) != 1 {
				t.Fatalf("pod %s: %d relist_pod records, want 1", uid, len(rp))
			}
			if rp[0].n("start_mono_ns") < sync.n("end_mono_ns") || !loopGoids["relist"][rp[0].n("goid")] {
				t.Errorf("pod %s: relist_pod %v, sync ended %d, relist goroutines %v", uid, rp[0], sync.n("end_mono_ns"), loopGoids["relist"])
			}
		case "1.31-1.35":
			if len(st["relist_pod"]) != 0 {
				t.Errorf("pod %s: relist_pod before 1.36", uid)
			}
		default:
			t.Errorf("config kubelet_shape %q", shape)
		}
	}
}

func TestCRIClientFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--cri-client", "/bin/cri-client", "--cri-socket", "/s", "--image", "r/app:1"}, true},
		{[]string{"--cri-client", "/bin/cri-client", "--cri-socket", "/s", "--image", "r/app:1", "--cri-ground-truth", "/g", "--stop-pods=false"}, true},
		{[]string{"--cri-client", "/bin/cri-client", "--image", "r/app:1"}, false},
		{[]string{"--cri-client", "/bin/cri-client", "--cri-socket", "/s"}, false},
		{[]string{"--cri-socket", "/s"}, false},
		{[]string{"--image", "r/app:1"}, false},
		{[]string{"--cri-ground-truth", "/g"}, false},
	} {
		var buf bytes.Buffer
		o, err := parseFlags(c.args, &buf)
		if (err == nil) != c.ok {
			t.Errorf("%q: error %v, want ok=%v", c.args, err, c.ok)
		}
		if err == nil && len(c.args) == 0 && (o.criClient != "" || !o.stopPods) {
			t.Errorf("defaults: cri-client %q, stop-pods %v", o.criClient, o.stopPods)
		}
	}
}
