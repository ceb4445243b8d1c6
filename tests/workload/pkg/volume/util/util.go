// Package util is the subset of k8s.io/kubernetes/pkg/volume/util the
// podtrace workload needs.
package util

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"k8s.io/kubernetes/pkg/volume/util/types"
)

// GetUniquePodName returns a unique identifier to reference a pod by.
func GetUniquePodName(pod *v1.Pod) types.UniquePodName {
	return types.UniquePodName(pod.UID)
}

// GetPodVolumeNames returns names of volumes that are used in a pod,
// either as filesystem mount or raw block device, together with list
// of all SELinux contexts of all containers that use the volumes.
func GetPodVolumeNames(pod *v1.Pod) (mounts sets.Set[string], devices sets.Set[string]) {
	mounts = sets.New[string]()
	devices = sets.New[string]()
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		for _, m := range c.VolumeMounts {
			mounts.Insert(m.Name)
		}
		for _, d := range c.VolumeDevices {
			devices.Insert(d.Name)
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, m := range c.VolumeMounts {
			mounts.Insert(m.Name)
		}
		for _, d := range c.VolumeDevices {
			devices.Insert(d.Name)
		}
	}
	return mounts, devices
}

// GetUniqueVolumeNameFromSpecWithPod returns a unique volume name with pod
// name included, as non-attachable volume plugins do:
// "<plugin>/<podUID>-<volume>".
func GetUniqueVolumeNameFromSpecWithPod(podName types.UniquePodName, pluginName, volumeName string) v1.UniqueVolumeName {
	return v1.UniqueVolumeName(pluginName + "/" + string(podName) + "-" + volumeName)
}

// PluginNameForVolume returns the in-tree plugin name and the directory
// name kubelet uses under pods/<uid>/volumes/ ("kubernetes.io~empty-dir").
func PluginNameForVolume(vol *v1.Volume) (pluginName, pluginDir string) {
	switch {
	case vol.Projected != nil:
		return "kubernetes.io/projected", "kubernetes.io~projected"
	case vol.Secret != nil:
		return "kubernetes.io/secret", "kubernetes.io~secret"
	case vol.ConfigMap != nil:
		return "kubernetes.io/configmap", "kubernetes.io~configmap"
	default:
		return "kubernetes.io/empty-dir", "kubernetes.io~empty-dir"
	}
}
