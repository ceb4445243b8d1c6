// Package types defines types used only by volume components
// (k8s.io/kubernetes/pkg/volume/util/types, imported by kubelet as volumetypes).
package types

import "k8s.io/apimachinery/pkg/types"

// UniquePodName defines the type to key pods off of. For ordinary pods it is
// the pod UID (see util.GetUniquePodName), so a UniquePodName argument is a
// Go string header {ptr, len} holding the UID.
type UniquePodName types.UID

// UniquePVCName defines the type to key pvc off.
type UniquePVCName types.UID

// GeneratedOperations contains the operation that is created as well as
// supporting functions required for the operation executor.
type GeneratedOperations struct {
	// Name of operation - could be used for resetting shared exponential backoff
	OperationName string
	// OperationFunc runs the operation (on a goroutine of the operation
	// executor's); its error is the operation's result.
	OperationFunc func() (err error)
}

// Run executes the operation.
func (o *GeneratedOperations) Run() error {
	return o.OperationFunc()
}
