// The kubelet binary of the podtrace test workload: a kubelet-shaped program
// (see tests/workload/README.md) that starts synthetic pods through the same
// functions a real kubelet uses, and writes its own ground truth.
package main

import (
	"os"

	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	args := os.Args[1:]
	// Run as `k3s agent` or `k3s server` (podtrace's test of finding a
	// kubelet inside k3s's multi-call binary): the sub-command is k3s's,
	// the flags after it are ours.
	if len(args) > 0 && (args[0] == "agent" || args[0] == "server") {
		args = args[1:]
	}
	os.Exit(app.Run(args))
}
