// Package pod is the subset of k8s.io/kubernetes/pkg/kubelet/pod (the pod
// manager, imported by kubelet as kubepod) the podtrace workload needs.
package pod

import (
	"sort"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Manager stores and manages access to pods, maintaining the mappings
// between static pods and mirror pods.
type Manager interface {
	// GetPods returns the regular pods bound to the kubelet and their spec.
	GetPods() []*v1.Pod
	// GetPodByUID provides the (non-mirror) pod that matches pod UID, as well as
	// whether the pod is found.
	GetPodByUID(types.UID) (*v1.Pod, bool)
	// AddPod adds the given pod to the manager.
	AddPod(pod *v1.Pod)
}

type basicManager struct {
	// Protects all internal maps.
	lock sync.RWMutex

	// Regular pods indexed by UID.
	podByUID map[types.UID]*v1.Pod
}

// NewBasicPodManager returns a functional Manager.
func NewBasicPodManager() Manager {
	return &basicManager{podByUID: make(map[types.UID]*v1.Pod)}
}

func (pm *basicManager) AddPod(pod *v1.Pod) {
	pm.lock.Lock()
	defer pm.lock.Unlock()
	pm.podByUID[pod.UID] = pod
}

func (pm *basicManager) GetPods() []*v1.Pod {
	pm.lock.RLock()
	defer pm.lock.RUnlock()
	pods := make([]*v1.Pod, 0, len(pm.podByUID))
	for _, p := range pm.podByUID {
		pods = append(pods, p)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods
}

func (pm *basicManager) GetPodByUID(uid types.UID) (*v1.Pod, bool) {
	pm.lock.RLock()
	defer pm.lock.RUnlock()
	pod, ok := pm.podByUID[uid]
	return pod, ok
}
