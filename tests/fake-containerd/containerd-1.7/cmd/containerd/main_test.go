package main

import (
	"io"
	"testing"

	"podtrace.test/fake-containerd/driver"
)

// The whole CRI handler chain answers every call of a run as planned.
func TestRun(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		const pods = 4
		calls, err := driver.Run(newServices(driver.Env{Images: driver.Images(pods), Log: io.Discard}),
			driver.Options{Pods: pods, Parallel: parallel})
		if err != nil {
			t.Fatalf("parallel=%v: %v", parallel, err)
		}
		if err := driver.Check(calls, pods); err != nil {
			t.Errorf("parallel=%v: %v", parallel, err)
		}
	}
}
