// Package cache implements data structures used by the kubelet volume manager to
// keep track of attached volumes and the pods that mounted them.
package cache

import (
	"fmt"
	"sort"
	"sync"

	v1 "k8s.io/api/core/v1"

	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/util"
	"k8s.io/kubernetes/pkg/volume/util/operationexecutor"
	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// DesiredStateOfWorld defines a set of thread-safe operations for the kubelet
// volume manager's desired state of the world cache.
// This cache contains volumes->pods i.e. a set of all volumes that should be
// attached to this node and the pods that reference them and should mount the
// volume.
type DesiredStateOfWorld interface {
	// AddPodToVolume adds the given pod to the given volume in the cache
	// indicating the specified pod should mount the specified volume.
	// A unique volumeName is generated from the volumeSpec and returned on
	// success.
	AddPodToVolume(podName volumetypes.UniquePodName, pod *v1.Pod, volumeSpec *volume.Spec, outerVolumeSpecName string, volumeGidValue string, seLinuxContainerContexts []string) (v1.UniqueVolumeName, error)

	// DeletePodFromVolume removes the given pod from the given volume in the
	// cache indicating the specified pod no longer requires the specified
	// volume.
	DeletePodFromVolume(podName volumetypes.UniquePodName, volumeName v1.UniqueVolumeName)

	// GetVolumesToMount generates and returns a list of volumes that should be
	// attached to this node and the pods they should be mounted to based on
	// the current desired state of the world.
	GetVolumesToMount() []VolumeToMount

	// GetPods generates and returns a map of pods in which map is indexed
	// with pod's unique name.
	GetPods() map[volumetypes.UniquePodName]bool

	// AddErrorToPod adds the given error to the given pod in the cache.
	AddErrorToPod(podName volumetypes.UniquePodName, err string)

	// PopPodErrors returns accumulated errors on a given pod and clears
	// them.
	PopPodErrors(podName volumetypes.UniquePodName) []string
}

// VolumeToMount represents a volume that is attached to this node and needs to
// be mounted to PodName.
type VolumeToMount struct {
	operationexecutor.VolumeToMount
}

// NewDesiredStateOfWorld returns a new instance of DesiredStateOfWorld.
func NewDesiredStateOfWorld() DesiredStateOfWorld {
	return &desiredStateOfWorld{
		volumesToMount: make(map[v1.UniqueVolumeName]volumeToMount),
		podErrors:      make(map[volumetypes.UniquePodName][]string),
	}
}

type desiredStateOfWorld struct {
	// volumesToMount is a map containing the set of volumes that should be
	// attached to this node and mounted to the pods referencing it. The key in
	// the map is the name of the volume and the value is a volume object
	// containing more information about the volume.
	volumesToMount map[v1.UniqueVolumeName]volumeToMount
	// podErrors are errors caught by desiredStateOfWorldPopulator about volumes for a given pod.
	podErrors map[volumetypes.UniquePodName][]string

	sync.RWMutex
}

// The volume object represents a volume that should be attached to this node,
// and mounted to podsToMount.
type volumeToMount struct {
	volumeName              v1.UniqueVolumeName
	podsToMount             map[volumetypes.UniquePodName]podToMount
	pluginIsAttachable      bool
	pluginIsDeviceMountable bool
	volumeGidValue          string
	pluginName              string
}

// The pod object represents a pod that references the underlying volume and
// should mount it once it is attached.
type podToMount struct {
	podName             volumetypes.UniquePodName
	pod                 *v1.Pod
	volumeSpec          *volume.Spec
	outerVolumeSpecName string
	mountRequestTime    timeNow
}

func (dsw *desiredStateOfWorld) AddPodToVolume(
	podName volumetypes.UniquePodName,
	pod *v1.Pod,
	volumeSpec *volume.Spec,
	outerVolumeSpecName string,
	volumeGidValue string,
	seLinuxContainerContexts []string) (v1.UniqueVolumeName, error) {
	dsw.Lock()
	defer dsw.Unlock()

	if volumeSpec == nil || volumeSpec.Volume == nil {
		return "", fmt.Errorf("failed to get Plugin from volumeSpec for volume %q", outerVolumeSpecName)
	}
	pluginName, _ := util.PluginNameForVolume(volumeSpec.Volume)
	// For non-attachable and non-device-mountable volumes, generate a unique name based on the pod
	// namespace and name and the name of the volume within the pod.
	volumeName := util.GetUniqueVolumeNameFromSpecWithPod(podName, pluginName, volumeSpec.Name())

	vmt, volumeExists := dsw.volumesToMount[volumeName]
	if !volumeExists {
		vmt = volumeToMount{
			volumeName:     volumeName,
			podsToMount:    make(map[volumetypes.UniquePodName]podToMount),
			volumeGidValue: volumeGidValue,
			pluginName:     pluginName,
		}
		dsw.volumesToMount[volumeName] = vmt
	}
	if _, podExists := vmt.podsToMount[podName]; !podExists {
		vmt.podsToMount[podName] = podToMount{
			podName:             podName,
			pod:                 pod,
			volumeSpec:          volumeSpec,
			outerVolumeSpecName: outerVolumeSpecName,
			mountRequestTime:    now(),
		}
	}
	return volumeName, nil
}

func (dsw *desiredStateOfWorld) DeletePodFromVolume(podName volumetypes.UniquePodName, volumeName v1.UniqueVolumeName) {
	dsw.Lock()
	defer dsw.Unlock()
	delete(dsw.podErrors, podName)
	volumeObj, volumeExists := dsw.volumesToMount[volumeName]
	if !volumeExists {
		return
	}
	delete(volumeObj.podsToMount, podName)
	if len(volumeObj.podsToMount) == 0 {
		delete(dsw.volumesToMount, volumeName)
	}
}

func (dsw *desiredStateOfWorld) GetPods() map[volumetypes.UniquePodName]bool {
	dsw.RLock()
	defer dsw.RUnlock()
	podList := make(map[volumetypes.UniquePodName]bool)
	for _, volumeObj := range dsw.volumesToMount {
		for podName := range volumeObj.podsToMount {
			podList[podName] = true
		}
	}
	return podList
}

func (dsw *desiredStateOfWorld) GetVolumesToMount() []VolumeToMount {
	dsw.RLock()
	defer dsw.RUnlock()

	volumesToMount := make([]VolumeToMount, 0 /* len */, len(dsw.volumesToMount) /* cap */)
	for volumeName, volumeObj := range dsw.volumesToMount {
		for podName, podObj := range volumeObj.podsToMount {
			vmt := VolumeToMount{
				VolumeToMount: operationexecutor.VolumeToMount{
					VolumeName:              volumeName,
					PodName:                 podName,
					Pod:                     podObj.pod,
					VolumeSpec:              podObj.volumeSpec,
					PluginIsAttachable:      volumeObj.pluginIsAttachable,
					PluginIsDeviceMountable: volumeObj.pluginIsDeviceMountable,
					OuterVolumeSpecName:     podObj.outerVolumeSpecName,
					VolumeGidValue:          volumeObj.volumeGidValue,
					MountRequestTime:        podObj.mountRequestTime,
					PluginName:              volumeObj.pluginName,
				},
			}
			volumesToMount = append(volumesToMount, vmt)
		}
	}
	// Deterministic order (the real one is map order): pod, then volume.
	sort.Slice(volumesToMount, func(i, j int) bool {
		a, b := &volumesToMount[i], &volumesToMount[j]
		if a.PodName != b.PodName {
			return a.PodName < b.PodName
		}
		return a.VolumeName < b.VolumeName
	})
	return volumesToMount
}

func (dsw *desiredStateOfWorld) AddErrorToPod(podName volumetypes.UniquePodName, err string) {
	dsw.Lock()
	defer dsw.Unlock()
	dsw.podErrors[podName] = append(dsw.podErrors[podName], err)
}

func (dsw *desiredStateOfWorld) PopPodErrors(podName volumetypes.UniquePodName) []string {
	dsw.Lock()
	defer dsw.Unlock()

	if errs, found := dsw.podErrors[podName]; found {
		delete(dsw.podErrors, podName)
		return errs
	}
	return []string{}
}
