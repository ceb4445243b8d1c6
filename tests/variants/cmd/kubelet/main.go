// Command kubelet is resolved, never run, by podtrace's catalogue tests
// (tracer/tests/variants.rs): build it with one of the tags gen_old,
// gen_mid, gen_new, gen_trap. Running it syncs one pod whose volume is
// already mounted, to keep every function reachable.
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/kubernetes/pkg/api"
	"k8s.io/kubernetes/pkg/kubelet"
	"k8s.io/kubernetes/pkg/kubelet/pleg"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler"
)

func main() {
	kl := &kubelet.Kubelet{VolumeManager: volumemanager.New(), PLEG: pleg.New()}
	pod := &api.Pod{Name: "p", Namespace: "default", UID: "u"}
	err := kl.Sync(context.Background(), pod)
	kl.PLEG.Step()
	stop := make(chan struct{})
	close(stop)
	reconciler.New(len(os.Args) > 1).Run(stop)
	fmt.Println("synced", pod.Name, err)
}
