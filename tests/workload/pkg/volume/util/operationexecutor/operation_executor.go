// Package operationexecutor is the subset of
// k8s.io/kubernetes/pkg/volume/util/operationexecutor the podtrace workload
// needs: the executor that runs each mount on a goroutine of its own (which
// then calls MarkVolumeAsMounted), its argument type, and the structs the
// volume manager caches are built from.
package operationexecutor

import (
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/util"
	"k8s.io/kubernetes/pkg/volume/util/nestedpendingoperations"
	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// OperationExecutor defines a set of operations for attaching, detaching,
// mounting, or unmounting a volume that are executed with a
// NewNestedPendingOperations which prevents more than one operation from
// being triggered on the same volume (the workload: mounting only).
type OperationExecutor interface {
	// MountVolume mounts the volume to the pod specified in volumeToMount,
	// on a goroutine of its own: the volume plugin's SetUp, then
	// actualStateOfWorld.MarkVolumeAsMounted. It returns at once (an
	// AlreadyExists error while that volume's operation still runs).
	MountVolume(waitForAttachTimeout time.Duration, volumeToMount VolumeToMount, actualStateOfWorld ActualStateOfWorldMounterUpdater, isRemount bool) error

	// IsOperationPending returns true if an operation for the given
	// volumeName and podName is pending, otherwise it returns false.
	IsOperationPending(volumeName v1.UniqueVolumeName, podName volumetypes.UniquePodName, nodeName types.NodeName) bool
}

// NewOperationExecutor returns a new instance of OperationExecutor.
func NewOperationExecutor(operationGenerator OperationGenerator) OperationExecutor {
	return &operationExecutor{
		pendingOperations:  nestedpendingoperations.NewNestedPendingOperations(),
		operationGenerator: operationGenerator,
	}
}

type operationExecutor struct {
	// pendingOperations keeps track of pending attach and detach operations so
	// multiple operations are not started on the same volume
	pendingOperations nestedpendingoperations.NestedPendingOperations

	// operationGenerator is an interface that provides implementations for
	// generating volume function
	operationGenerator OperationGenerator
}

func (oe *operationExecutor) IsOperationPending(
	volumeName v1.UniqueVolumeName,
	podName volumetypes.UniquePodName,
	nodeName types.NodeName) bool {
	return oe.pendingOperations.IsOperationPending(volumeName, podName, nodeName)
}

func (oe *operationExecutor) MountVolume(
	waitForAttachTimeout time.Duration,
	volumeToMount VolumeToMount,
	actualStateOfWorld ActualStateOfWorldMounterUpdater,
	isRemount bool) error {
	generatedOperations := oe.operationGenerator.GenerateMountVolumeFunc(
		waitForAttachTimeout, volumeToMount, actualStateOfWorld, isRemount)

	// Avoid executing mount/map from multiple pods referencing the
	// same volume in parallel
	podName := nestedpendingoperations.EmptyUniquePodName
	if !volumeToMount.PluginIsAttachable && !volumeToMount.PluginIsDeviceMountable {
		// volume plugins which are Non-attachable and Non-deviceMountable can execute mount for multiple pods
		// referencing the same volume in parallel
		podName = util.GetUniquePodName(volumeToMount.Pod)
	}
	return oe.pendingOperations.Run(
		volumeToMount.VolumeName, podName, "" /* nodeName */, generatedOperations)
}

// MarkVolumeOpts is a struct to pass arguments to MountVolume functions.
//
// Field order and types are the real ones (Kubernetes 1.27-1.35; 1.36 drops
// OuterVolumeSpecName: 136 bytes, 17 words). The struct is 152 bytes, 19
// words, all of them integer registers' worth (strings and interfaces take
// two), more than the 9 the Go register ABI has (amd64 RAX..R11; arm64
// R0..R15 has 16: still too few, since the receiver takes one), so it is
// passed on the stack. At entry to
// (*actualStateOfWorld).MarkVolumeAsMounted on amd64 the receiver is in RAX
// and the struct starts at SP+8 (SP+0 holds the return address):
//
//	PodName             SP+8   (ptr SP+8,  len SP+16)   offset 0
//	PodUID              SP+24  (ptr SP+24, len SP+32)   offset 16
//	VolumeName          SP+40  (ptr SP+40, len SP+48)   offset 32
//	Mounter             SP+56  (iface: itab, data)      offset 48
//	BlockVolumeMapper   SP+72                           offset 64
//	OuterVolumeSpecName SP+88  (ptr SP+88, len SP+96)   offset 80
//	VolumeGidVolume     SP+104                          offset 96
//	VolumeSpec          SP+120 (*volume.Spec)           offset 112
//	VolumeMountState    SP+128                          offset 120
//	SELinuxMountContext SP+144                          offset 136
//
// On arm64 the stack arguments start at RSP+8 as well (the caller's LR slot
// is at 0(RSP)). See operation_executor_test.go.
type MarkVolumeOpts struct {
	PodName             volumetypes.UniquePodName
	PodUID              types.UID
	VolumeName          v1.UniqueVolumeName
	Mounter             volume.Mounter
	BlockVolumeMapper   volume.BlockVolumeMapper
	OuterVolumeSpecName string
	VolumeGidVolume     string
	VolumeSpec          *volume.Spec
	VolumeMountState    VolumeMountState
	SELinuxMountContext string
}

// VolumeMountState represents the state of a volume mount.
type VolumeMountState string

const (
	// VolumeMounted means volume has been mounted in pod's local path
	VolumeMounted VolumeMountState = "VolumeMounted"

	// VolumeMountUncertain means volume may or may not be mounted in pods' local path
	VolumeMountUncertain VolumeMountState = "VolumeMountUncertain"

	// VolumeNotMounted means volume has not been mounted in pod's local path
	VolumeNotMounted VolumeMountState = "VolumeNotMounted"
)

// ActualStateOfWorldMounterUpdater defines a set of operations updating the actual
// state of the world cache after successful mount/unmount.
type ActualStateOfWorldMounterUpdater interface {
	// Marks the specified volume as mounted to the specified pod
	MarkVolumeAsMounted(markVolumeOpts MarkVolumeOpts) error
}

// VolumeToMount represents a volume that should be attached to this node and
// mounted to the PodName.
type VolumeToMount struct {
	// VolumeName is the unique identifier for the volume that should be
	// mounted.
	VolumeName v1.UniqueVolumeName

	// PodName is the unique identifier for the pod that the volume should be
	// mounted to after it is attached.
	PodName volumetypes.UniquePodName

	// VolumeSpec is a volume spec containing the specification for the volume
	// that should be mounted. Used to create NewMounter. Used to generate
	// InnerVolumeSpecName.
	VolumeSpec *volume.Spec

	// outerVolumeSpecName is the podSpec.Volume[x].Name of the volume. If the
	// volume was referenced through a persistent volume claim, this contains
	// the podSpec.Volume[x].Name of the persistent volume claim.
	OuterVolumeSpecName string

	// Pod to mount the volume to. Used to create NewMounter.
	Pod *v1.Pod

	// PluginIsAttachable indicates that the plugin for this volume implements
	// the volume.Attacher interface
	PluginIsAttachable bool

	// PluginIsDeviceMountable indicates that the plugin for this volume implements
	// the volume.DeviceMounter interface
	PluginIsDeviceMountable bool

	// VolumeGidValue contains the value of the GID annotation, if present.
	VolumeGidValue string

	// DevicePath contains the path on the node where the volume is attached.
	// For non-attachable volumes this is empty.
	DevicePath string

	// ReportedInUse indicates that the volume was successfully added to the
	// VolumesInUse field in the node's status.
	ReportedInUse bool

	// MountRequestTime stores time at which mount operation was requested
	MountRequestTime time.Time

	// SELinuxLabel is the SELinux label to mount the volume with.
	SELinuxLabel string

	// PluginName is the in-tree plugin name ("kubernetes.io/empty-dir").
	PluginName string
}

// MountedVolume represents a volume that has successfully been mounted to a pod.
type MountedVolume struct {
	PodName             volumetypes.UniquePodName
	VolumeName          v1.UniqueVolumeName
	InnerVolumeSpecName string
	OuterVolumeSpecName string
	PluginName          string
	PodUID              types.UID
	Mounter             volume.Mounter
	BlockVolumeMapper   volume.BlockVolumeMapper
	VolumeGidValue      string
	VolumeSpec          *volume.Spec
	DeviceMountPath     string
	SELinuxMountContext string
}
