// Package kubelet has one catalogue function kept out of line, so that the
// same binary has a probe that resolves ("ok") next to the inlined one.
package kubelet

import (
	"errors"

	"k8s.io/kubernetes/pkg/kubelet/pleg"
)

type Kubelet struct{ PLEG *pleg.GenericPLEG }

// SyncPod has kubelet 1.27-1.35's result shape (isTerminal bool, err error)
// and, like kubelet's, a deferred closure reading the results: the catalogue
// recognises the shape by the result registers it fills.
//
//go:noinline
func (kl *Kubelet) SyncPod(n int) (isTerminal bool, err error) {
	defer func() {
		if err != nil {
			kl.PLEG = nil
		}
	}()
	s := 0
	for i := 0; i < n; i++ {
		s += kl.PLEG.Relist(i)
	}
	if s < 0 {
		return false, errors.New("negative")
	}
	return s > 100, nil
}
