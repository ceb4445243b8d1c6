package cache

import (
	"fmt"
	"sort"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/util/operationexecutor"
	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// ActualStateOfWorld defines a set of thread-safe operations for the kubelet
// volume manager's actual state of the world cache.
// This cache contains volumes->pods i.e. a set of all volumes attached to this
// node and the pods that the manager believes have successfully mounted the
// volume.
type ActualStateOfWorld interface {
	// ActualStateOfWorld must implement the methods required to allow
	// operationexecutor to interact with it.
	operationexecutor.ActualStateOfWorldMounterUpdater

	// PodExistsInVolume returns true if the given pod exists in the list of
	// mountedPods for the given volume in the cache, indicating that the volume
	// is attached to this node and the pod has successfully mounted it.
	PodExistsInVolume(podName volumetypes.UniquePodName, volumeName v1.UniqueVolumeName) (bool, string, error)

	// VolumeExists returns true if the given volume exists in the list of
	// attached volumes in the cache, indicating the volume is attached to this
	// node.
	VolumeExists(volumeName v1.UniqueVolumeName) bool

	// GetMountedVolumesForPod generates and returns a list of volumes that are
	// successfully attached and mounted for the specified pod based on the
	// current actual state of the world.
	GetMountedVolumesForPod(podName volumetypes.UniquePodName) []MountedVolume
}

// MountedVolume represents a volume that has successfully been mounted to a pod.
type MountedVolume struct {
	operationexecutor.MountedVolume
}

// NewActualStateOfWorld returns a new instance of ActualStateOfWorld.
func NewActualStateOfWorld() ActualStateOfWorld {
	return &actualStateOfWorld{
		attachedVolumes: make(map[v1.UniqueVolumeName]attachedVolume),
	}
}

type actualStateOfWorld struct {
	// attachedVolumes is a map containing the set of volumes the kubelet volume
	// manager believes to be successfully attached to this node. Volume types
	// that do not implement an attacher interface are assumed to be in this
	// state by default.
	// The key in this map is the name of the volume and the value is an object
	// containing more information about the attached volume.
	attachedVolumes map[v1.UniqueVolumeName]attachedVolume

	sync.RWMutex
}

// attachedVolume represents a volume the kubelet volume manager believes to be
// successfully attached to a node it is managing.
type attachedVolume struct {
	volumeName  v1.UniqueVolumeName
	mountedPods map[volumetypes.UniquePodName]mountedPod
	spec        *volume.Spec
	pluginName  string
}

// The mountedPod object represents a pod for which the kubelet volume manager
// believes the underlying volume has been successfully been mounted.
type mountedPod struct {
	podName                volumetypes.UniquePodName
	podUID                 types.UID
	mounter                volume.Mounter
	blockVolumeMapper      volume.BlockVolumeMapper
	volumeSpec             *volume.Spec
	outerVolumeSpecName    string
	volumeGidValue         string
	volumeMountStateForPod operationexecutor.VolumeMountState
	seLinuxMountContext    string
}

// MarkVolumeAsMounted records that a volume was mounted for a pod.
//
// As in kubelet, the mount operation calls it through the
// ActualStateOfWorldMounterUpdater interface once SetUp succeeded, on the
// operation executor's goroutine for that mount (not the reconciler's).
// markVolumeOpts is passed on the stack (see operationexecutor.MarkVolumeOpts
// for the offsets).
//
// noinline: the real function is a one-line wrapper that the compiler could
// inline into a direct caller (kubelet only calls it through an interface);
// keep it a real call so that a uprobe on its symbol always fires.
//
//go:noinline
func (asw *actualStateOfWorld) MarkVolumeAsMounted(markVolumeOpts operationexecutor.MarkVolumeOpts) error {
	return asw.AddPodToVolume(markVolumeOpts)
}

// AddPodToVolume adds the given pod to the given volume in the cache
// indicating the specified volume has been successfully mounted to the
// specified pod.
func (asw *actualStateOfWorld) AddPodToVolume(markVolumeOpts operationexecutor.MarkVolumeOpts) error {
	podName := markVolumeOpts.PodName
	volumeName := markVolumeOpts.VolumeName
	if podName == "" || volumeName == "" {
		return fmt.Errorf("no pod name or volume name in %+v", markVolumeOpts)
	}
	asw.Lock()
	defer asw.Unlock()

	volumeObj, volumeExists := asw.attachedVolumes[volumeName]
	if !volumeExists {
		// Non-attachable volumes are "attached" implicitly.
		volumeObj = attachedVolume{
			volumeName:  volumeName,
			mountedPods: make(map[volumetypes.UniquePodName]mountedPod),
			spec:        markVolumeOpts.VolumeSpec,
		}
		asw.attachedVolumes[volumeName] = volumeObj
	}
	volumeObj.mountedPods[podName] = mountedPod{
		podName:                podName,
		podUID:                 markVolumeOpts.PodUID,
		mounter:                markVolumeOpts.Mounter,
		blockVolumeMapper:      markVolumeOpts.BlockVolumeMapper,
		outerVolumeSpecName:    markVolumeOpts.OuterVolumeSpecName,
		volumeGidValue:         markVolumeOpts.VolumeGidVolume,
		volumeSpec:             markVolumeOpts.VolumeSpec,
		volumeMountStateForPod: markVolumeOpts.VolumeMountState,
		seLinuxMountContext:    markVolumeOpts.SELinuxMountContext,
	}
	return nil
}

func (asw *actualStateOfWorld) PodExistsInVolume(podName volumetypes.UniquePodName, volumeName v1.UniqueVolumeName) (bool, string, error) {
	asw.RLock()
	defer asw.RUnlock()

	volumeObj, volumeExists := asw.attachedVolumes[volumeName]
	if !volumeExists {
		return false, "", nil
	}
	podObj, podExists := volumeObj.mountedPods[podName]
	if !podExists {
		return false, "", nil
	}
	return podObj.volumeMountStateForPod == operationexecutor.VolumeMounted, "", nil
}

func (asw *actualStateOfWorld) VolumeExists(volumeName v1.UniqueVolumeName) bool {
	asw.RLock()
	defer asw.RUnlock()
	_, volumeExists := asw.attachedVolumes[volumeName]
	return volumeExists
}

func (asw *actualStateOfWorld) GetMountedVolumesForPod(podName volumetypes.UniquePodName) []MountedVolume {
	asw.RLock()
	defer asw.RUnlock()
	mountedVolume := make([]MountedVolume, 0 /* len */, len(asw.attachedVolumes) /* cap */)
	for _, volumeObj := range asw.attachedVolumes {
		for mountedPodName, podObj := range volumeObj.mountedPods {
			if mountedPodName == podName && podObj.volumeMountStateForPod == operationexecutor.VolumeMounted {
				mountedVolume = append(mountedVolume, getMountedVolume(&podObj, &volumeObj))
			}
		}
	}
	sort.Slice(mountedVolume, func(i, j int) bool { return mountedVolume[i].VolumeName < mountedVolume[j].VolumeName })
	return mountedVolume
}

// getMountedVolume constructs and returns a MountedVolume object from the given
// mountedPod and attachedVolume objects.
func getMountedVolume(mountedPod *mountedPod, attachedVolume *attachedVolume) MountedVolume {
	return MountedVolume{
		MountedVolume: operationexecutor.MountedVolume{
			PodName:             mountedPod.podName,
			VolumeName:          attachedVolume.volumeName,
			InnerVolumeSpecName: mountedPod.volumeSpec.Name(),
			OuterVolumeSpecName: mountedPod.outerVolumeSpecName,
			PluginName:          attachedVolume.pluginName,
			PodUID:              mountedPod.podUID,
			Mounter:             mountedPod.mounter,
			BlockVolumeMapper:   mountedPod.blockVolumeMapper,
			VolumeGidValue:      mountedPod.volumeGidValue,
			VolumeSpec:          mountedPod.volumeSpec,
			SELinuxMountContext: mountedPod.seLinuxMountContext,
		},
	}
}
