//go:build !gen_mid

package reconciler

func (rc *reconciler) loopFunc() func() {
	return func() { rc.reconcile() }
}
