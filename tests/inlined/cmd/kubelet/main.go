// Command kubelet is a test binary for `podtrace probes`: one catalogue
// function inlined away, one kept, one both (see tests/e2e/cli.rs).
package main

import (
	"fmt"
	"os"

	"k8s.io/kubernetes/pkg/kubelet"
	"k8s.io/kubernetes/pkg/kubelet/pleg"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager"
)

func main() {
	kl := kubelet.Kubelet{PLEG: pleg.New(len(os.Args))}
	t, err := kl.SyncPod(len(os.Args))
	fmt.Println(t, err, volumemanager.Check(volumemanager.New(2), len(os.Args)))
}
