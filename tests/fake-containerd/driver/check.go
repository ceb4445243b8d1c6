package driver

import (
	"fmt"
	"regexp"
	"time"
)

var id64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Handlers are the CRI calls a run makes, in the order of one pod's life.
var Handlers = []string{
	"RunPodSandbox", "PullImage", "CreateContainer", "StartContainer",
	"StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox",
}

// Check tells whether calls is a complete, consistent ground truth of a
// run of pods pods: every handler once per pod plus the one failing
// PullImage, 64-hex ids, distinct pods, handler times of 1-3 ms (plus
// scheduling slack).
func Check(calls []*Call, pods int) error {
	want := map[string]int{}
	for _, h := range Handlers {
		want[h] = pods
	}
	if pods > 0 {
		want["PullImage"]++
	}
	got := map[string]int{}
	uids, sandboxes, containers := map[string]bool{}, map[string]bool{}, map[string]bool{}
	failed := 0
	for _, c := range calls {
		got[c.Call]++
		d := time.Duration(c.EndMono - c.StartMono)
		if d < time.Millisecond || d > 50*time.Millisecond {
			return fmt.Errorf("%s of %s took %v, want 1-3 ms", c.Call, c.PodName, d)
		}
		if c.InnerStartMono == 0 || c.InnerStartMono < c.StartMono || c.InnerEndMono < c.InnerStartMono || c.InnerEndMono > c.EndMono {
			return fmt.Errorf("%s of %s: the handler's own stamps [%d, %d] are not inside the call [%d, %d]",
				c.Call, c.PodName, c.InnerStartMono, c.InnerEndMono, c.StartMono, c.EndMono)
		}
		if c.Error {
			failed++
			if c.Call != "PullImage" || c.Image != MissingImage || c.ImageRef != "" {
				return fmt.Errorf("unexpected failure: %+v", c)
			}
			continue
		}
		if c.PodName == "" || c.PodUID == "" || c.PodNamespace == "" || c.Attempt == 0 {
			return fmt.Errorf("%s without its pod: %+v", c.Call, c)
		}
		if !id64.MatchString(c.SandboxID) {
			return fmt.Errorf("%s: sandbox id %q is not 64 hex digits", c.Call, c.SandboxID)
		}
		if c.Call == "RunPodSandbox" {
			if sandboxes[c.SandboxID] || uids[c.PodUID] {
				return fmt.Errorf("RunPodSandbox: sandbox id or pod uid not unique: %+v", c)
			}
			sandboxes[c.SandboxID], uids[c.PodUID] = true, true
			continue
		}
		if c.ImageRef == "" {
			return fmt.Errorf("%s without image ref: %+v", c.Call, c)
		}
		if c.Call == "PullImage" {
			continue
		}
		if !id64.MatchString(c.ContainerID) {
			return fmt.Errorf("%s: container id %q is not 64 hex digits", c.Call, c.ContainerID)
		}
		if c.Call == "CreateContainer" {
			if containers[c.ContainerID] {
				return fmt.Errorf("CreateContainer: container id not unique: %+v", c)
			}
			containers[c.ContainerID] = true
		}
	}
	for h, n := range want {
		if got[h] != n {
			return fmt.Errorf("%d %s calls, want %d (all: %v)", got[h], h, n, got)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("calls of unexpected handlers: %v", got)
	}
	if pods > 0 && failed != 1 {
		return fmt.Errorf("%d failed calls, want 1", failed)
	}
	return nil
}
