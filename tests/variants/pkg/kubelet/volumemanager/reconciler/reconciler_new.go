//go:build gen_mid

package reconciler

func (rc *reconciler) loopFunc() func() {
	if rc.useNew {
		return func() { rc.reconcileNew() }
	}
	return func() { rc.reconcile() }
}

//go:noinline
func (rc *reconciler) reconcileNew() {
	rc.mountOrAttachVolumes()
}
