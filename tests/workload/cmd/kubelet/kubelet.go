// The kubelet binary of the podtrace test workload: a kubelet-shaped program
// (see tests/workload/README.md) that starts synthetic pods through the same
// functions a real kubelet uses, and writes its own ground truth.
package main

import (
	"os"

	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(app.Run(os.Args[1:]))
}
