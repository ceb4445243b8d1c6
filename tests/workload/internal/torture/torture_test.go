package torture

import (
	"context"
	"testing"
)

func TestRun(t *testing.T) {
	res, err := Run(context.Background(), Options{Goroutines: 400, ScratchDir: t.TempDir(), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	// 400 goroutines / 8 scenarios = 50 each, plus one reference
	// goroutine per scenario: 51.
	if res.Panics != 102 {
		t.Errorf("%d panics, want 102 (2 panic scenarios x 51)", res.Panics)
	}
	if got := res.Unreturned[FnGetUnmountedVolumes]; got != 102 {
		t.Errorf("getUnmountedVolumes unreturned %d, want 102", got)
	}
	want := map[string]int64{
		FnGetUnmountedVolumes:      51 * 7,
		FnVerifyFunc1:              51 * 4,
		FnVerifyVolumesMountedFunc: 51 * 4,
		FnKubeletSyncPod:           102,
		FnWaitForAttachAndMount:    102,
		FnPollUntilContextTimeout:  102,
		FnRuntimeSyncPod:           51,
		FnCreatePodSandbox:         51,
		FnStartContainer:           51,
		FnMarkVolumeAsMounted:      51,
	}
	for fn, n := range want {
		if res.Calls[fn] != n {
			t.Errorf("calls[%s] = %d, want %d", fn, res.Calls[fn], n)
		}
	}
	if len(res.Calls) != len(want) {
		t.Errorf("calls has %d functions, want %d: %v", len(res.Calls), len(want), res.Calls)
	}
	moved := 0
	for _, k := range res.Kinds {
		moved += k.MovedDuringCall
	}
	if moved == 0 {
		t.Error("the stack never moved during a probed call")
	}
	if res.Kinds["getUnmountedVolumes_growth_inside"].MovedDuringCall != 50 {
		t.Errorf("growth_inside: stack moved in %d of 50 calls", res.Kinds["getUnmountedVolumes_growth_inside"].MovedDuringCall)
	}
}
