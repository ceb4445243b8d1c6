// Package kubelet has one catalogue function kept out of line, so that the
// same binary has a probe that resolves ("ok") next to the inlined one.
package kubelet

import "k8s.io/kubernetes/pkg/kubelet/pleg"

type Kubelet struct{ PLEG *pleg.GenericPLEG }

//go:noinline
func (kl *Kubelet) SyncPod(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += kl.PLEG.Relist(i)
	}
	return s
}
