//go:build gen_new

package pleg

// relistPod relists one pod (kubelet 1.36+): podUID in RBX/RCX.
//
//go:noinline
func (g *GenericPLEG) relistPod(podUID string) {
	g.reconcilePodRecord(podUID)
}

func (g *GenericPLEG) RequestRelist(podUID string) {
	select {
	case g.requests <- podUID:
	default:
	}
}

// Step serves one on-demand request, or relists everything.
func (g *GenericPLEG) Step() {
	select {
	case uid := <-g.requests:
		g.relistPod(uid)
	default:
		g.Relist()
	}
}
