// Package nestedpendingoperations is the subset of
// k8s.io/kubernetes/pkg/volume/util/nestedpendingoperations the podtrace
// workload needs: operations keyed by volume (and pod) run one at a time,
// each on a goroutine of its own.
package nestedpendingoperations

import (
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/runtime"

	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// EmptyUniquePodName is a UniquePodName for empty string.
const EmptyUniquePodName volumetypes.UniquePodName = volumetypes.UniquePodName("")

// NestedPendingOperations defines the supported set of operations.
type NestedPendingOperations interface {
	// Run adds the concatenation of volumeName, podName and nodeName to
	// the list of running operations and spawns a new go routine to run
	// generatedOperations. If an operation with the same key is already
	// running, an AlreadyExists error is returned.
	Run(
		volumeName v1.UniqueVolumeName,
		podName volumetypes.UniquePodName,
		nodeName types.NodeName,
		generatedOperations volumetypes.GeneratedOperations) error

	// Wait blocks until all operations are completed.
	Wait()

	// IsOperationPending returns true if an operation for the given
	// volumeName, podName and nodeName is pending.
	IsOperationPending(
		volumeName v1.UniqueVolumeName,
		podName volumetypes.UniquePodName,
		nodeName types.NodeName) bool
}

// NewNestedPendingOperations returns a new instance of NestedPendingOperations.
func NewNestedPendingOperations() NestedPendingOperations {
	return &nestedPendingOperations{operations: map[operationKey]bool{}}
}

type operationKey struct {
	volumeName v1.UniqueVolumeName
	podName    volumetypes.UniquePodName
	nodeName   types.NodeName
}

type nestedPendingOperations struct {
	lock       sync.Mutex
	operations map[operationKey]bool
	running    sync.WaitGroup
}

// alreadyExistsError is returned by Run when the operation is pending.
type alreadyExistsError struct{ key operationKey }

func (e alreadyExistsError) Error() string {
	return fmt.Sprintf("Failed to create operation with name %q. An operation with that name is already executing.", e.key.volumeName)
}

// IsAlreadyExists returns true if an error returned from
// NestedPendingOperations indicates a new operation can not be started
// because an operation with the same operation name is already executing.
func IsAlreadyExists(err error) bool {
	_, ok := err.(alreadyExistsError)
	return ok
}

func (grm *nestedPendingOperations) Run(
	volumeName v1.UniqueVolumeName,
	podName volumetypes.UniquePodName,
	nodeName types.NodeName,
	generatedOperations volumetypes.GeneratedOperations) error {
	grm.lock.Lock()
	defer grm.lock.Unlock()
	key := operationKey{volumeName, podName, nodeName}
	if grm.operations[key] {
		return alreadyExistsError{key}
	}
	grm.operations[key] = true
	grm.running.Add(1)
	go func() {
		// Handle unhandled panics (very unlikely)
		defer runtime.HandleCrash()
		// Handle completion of the operation (its errors were reported by
		// the operation itself)
		defer grm.operationComplete(key)
		_ = generatedOperations.Run()
	}()
	return nil
}

func (grm *nestedPendingOperations) IsOperationPending(
	volumeName v1.UniqueVolumeName,
	podName volumetypes.UniquePodName,
	nodeName types.NodeName) bool {
	grm.lock.Lock()
	defer grm.lock.Unlock()
	return grm.operations[operationKey{volumeName, podName, nodeName}]
}

// operationComplete ends the operation (kubelet also records the error for
// exponential backoff; the workload retries on the next reconciler tick).
func (grm *nestedPendingOperations) operationComplete(key operationKey) {
	grm.lock.Lock()
	delete(grm.operations, key)
	grm.lock.Unlock()
	grm.running.Done()
}

func (grm *nestedPendingOperations) Wait() {
	grm.running.Wait()
}
