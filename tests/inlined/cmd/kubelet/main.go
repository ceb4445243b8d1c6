// Command kubelet is a test binary for `podtrace probes`: one catalogue
// function inlined away, one kept (see tests/e2e/cli.rs).
package main

import (
	"fmt"
	"os"

	"k8s.io/kubernetes/pkg/kubelet"
	"k8s.io/kubernetes/pkg/kubelet/pleg"
)

func main() {
	kl := kubelet.Kubelet{PLEG: pleg.New(len(os.Args))}
	fmt.Println(kl.SyncPod(len(os.Args)))
}
