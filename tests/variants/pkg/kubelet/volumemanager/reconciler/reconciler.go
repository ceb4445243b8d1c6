// Package reconciler has the reconciler tick under its real names:
// reconcile in every generation, and reconcileNew beside it in gen_mid
// (kubelet 1.28-1.30 compile both; a feature gate picks one at run time).
package reconciler

import (
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

type reconciler struct {
	mounted int
	useNew  bool
}

func New(useNew bool) *reconciler { return &reconciler{useNew: useNew} }

func (rc *reconciler) Run(stopCh <-chan struct{}) {
	wait.Until(rc.loopFunc(), 100*time.Millisecond, stopCh)
}

//go:noinline
func (rc *reconciler) mountAttachedVolumes(n int) {
	rc.mounted += n
	if rc.mounted > 1000 {
		fmt.Fprintln(os.Stderr, "mounted", rc.mounted)
	}
}

//go:noinline
func (rc *reconciler) mountOrAttachVolumes() {
	for i := 0; i < 3; i++ {
		rc.mountAttachedVolumes(i)
	}
}

//go:noinline
func (rc *reconciler) reconcile() {
	rc.mountOrAttachVolumes()
}
