// Package kubelet models k8s.io/kubernetes/pkg/kubelet for the podtrace test
// workload: the same function symbols, signatures and control flow as
// kubelet 1.31-1.33 on the pod start-up path, with the work behind them
// replaced by small real work (directories, files) and sleeps.
package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/flowcontrol"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/pkg/kubelet/config"
	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
	"k8s.io/kubernetes/pkg/kubelet/kuberuntime"
	"k8s.io/kubernetes/pkg/kubelet/pleg"
	kubepod "k8s.io/kubernetes/pkg/kubelet/pod"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager"
)

const (
	// Period for performing global cleanup tasks.
	housekeepingPeriod = time.Second * 2

	// backOffPeriod is the period to back off when pod syncing results in an
	// error.
	backOffPeriod = time.Second * 10

	// MaxContainerBackOff is the max backoff period for container restarts, exported for the e2e test
	MaxContainerBackOff = 300 * time.Second

	// Capacity of the channel for receiving pod lifecycle events. This number
	// is a bit arbitrary and may be adjusted in the future.
	plegChannelCapacity = 1000

	// plegRelistThreshold: a conservative health threshold.
	genericPlegRelistThreshold = time.Minute * 3
)

// genericPlegRelistPeriod is a constant (1 s) in kubelet; a variable here
// so that the workload's presets can change it.
var genericPlegRelistPeriod = time.Second * 1

// Options configures the workload's kubelet.
type Options struct {
	// RootDirectory is kubelet's --root-dir: pods live in ROOT/pods/<uid>.
	RootDirectory string
	// PLEGRelistPeriod overrides genericPlegRelistPeriod.
	PLEGRelistPeriod time.Duration
	// Volume manager loop periods.
	VolumeIntervals volumemanager.Intervals
	// PodPrepareLatency is slept in SyncPod before the pod directories are
	// made; it stands for the mirror-pod / cgroup work kubelet does there.
	PodPrepareLatency time.Duration
	// CRILatency is the duration of each fake CRI call.
	CRILatency time.Duration
	// CRIClient, if set, makes the CRI calls on a real runtime instead of
	// the CRILatency sleeps.
	CRIClient *kuberuntime.CRIClient
	// OnSyncDone is called after each SyncPod returned.
	OnSyncDone SyncDoneFunc
	// GroundTruth receives records (may be nil).
	GroundTruth *groundtruth.Recorder
}

// Kubelet is the main kubelet implementation (the parts the pod start path uses).
type Kubelet struct {
	hostname      string
	rootDirectory string

	// podManager stores the desired set of admitted pods and mirror pods that the kubelet should be
	// running.
	podManager kubepod.Manager

	// podWorkers is responsible for driving the lifecycle state machine of each pod.
	podWorkers PodWorkers

	// Cache for the pod status of the pods (filled by PLEG in kubelet).
	podCache kubecontainer.Cache

	// Container runtime.
	containerRuntime kubecontainer.Runtime

	// Generates pod events.
	pleg pleg.PodLifecycleEventGenerator

	// VolumeManager runs a set of asynchronous loops that figure out which
	// volumes need to be attached/mounted/unmounted/detached based on the pods
	// scheduled on this node and makes it so.
	volumeManager volumemanager.VolumeManager

	// sourcesReady records the sources seen by the kubelet.
	sourcesReady config.SourcesReady

	// Container restart Backoff
	crashLoopBackOff *flowcontrol.Backoff

	// podPrepareLatency: see Options.
	podPrepareLatency time.Duration

	gt *groundtruth.Recorder
}

// NewMainKubelet instantiates a new Kubelet object along with all the required internal modules.
func NewMainKubelet(opts Options) (*Kubelet, error) {
	if opts.RootDirectory == "" {
		return nil, fmt.Errorf("invalid root directory %q", opts.RootDirectory)
	}
	if opts.PLEGRelistPeriod > 0 {
		genericPlegRelistPeriod = opts.PLEGRelistPeriod
	}
	volumemanager.SetIntervals(opts.VolumeIntervals)

	klet := &Kubelet{
		hostname:          "podtrace-node",
		rootDirectory:     opts.RootDirectory,
		podManager:        kubepod.NewBasicPodManager(),
		podCache:          kubecontainer.NewCache(),
		sourcesReady:      config.NewSourcesReady(),
		crashLoopBackOff:  flowcontrol.NewBackOff(backOffPeriod, MaxContainerBackOff),
		podPrepareLatency: opts.PodPrepareLatency,
		gt:                opts.GroundTruth,
	}
	if err := klet.setupDataDirs(); err != nil {
		return nil, err
	}
	rs := kuberuntime.NewLatencyRuntimeService(opts.CRILatency)
	if opts.CRIClient != nil {
		rs = opts.CRIClient
	}
	klet.containerRuntime = kuberuntime.NewKubeGenericRuntimeManager(
		rs,
		filepath.Join(klet.rootDirectory, "logs", "pods"),
		opts.GroundTruth)
	klet.pleg = pleg.NewGenericPLEG(klet.getPodsDir(), make(chan *pleg.PodLifecycleEvent, plegChannelCapacity),
		&pleg.RelistDuration{RelistPeriod: genericPlegRelistPeriod, RelistThreshold: genericPlegRelistThreshold},
		opts.GroundTruth)
	klet.podWorkers = newPodWorkers(klet, klet.podCache, opts.OnSyncDone, opts.GroundTruth)
	klet.volumeManager = volumemanager.NewVolumeManager(klet.podManager, klet.podWorkers, klet.getPodsDir(), opts.GroundTruth)
	return klet, nil
}

// Run starts the kubelet's loops (volume manager, PLEG) and the sync loop
// that reads pod updates; it returns when ctx is cancelled and every loop
// has stopped.
func (kl *Kubelet) Run(ctx context.Context, updates <-chan kubetypes.PodUpdate) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		kl.volumeManager.Run(ctx, kl.sourcesReady)
	}()
	kl.pleg.Start()

	kl.syncLoop(ctx, updates)

	kl.pleg.Stop()
	kl.podWorkers.Stop()
	wg.Wait()
}

// syncLoop is the main loop for processing changes (here: pod additions and
// PLEG events, which are drained).
func (kl *Kubelet) syncLoop(ctx context.Context, updates <-chan kubetypes.PodUpdate) {
	plegCh := kl.pleg.Watch()
	for {
		if !kl.syncLoopIteration(ctx, updates, plegCh) {
			return
		}
	}
}

func (kl *Kubelet) syncLoopIteration(ctx context.Context, configCh <-chan kubetypes.PodUpdate, plegCh chan *pleg.PodLifecycleEvent) bool {
	select {
	case <-ctx.Done():
		return false
	case u, open := <-configCh:
		if !open {
			<-ctx.Done()
			return false
		}
		switch u.Op {
		case kubetypes.ADD:
			kl.HandlePodAdditions(u.Pods)
		}
	case <-plegCh:
		// A real kubelet re-syncs the pod on a PLEG event; the workload
		// only syncs each pod once.
	}
	return true
}

// HandlePodAdditions is the callback in SyncHandler for pods being added from
// a config source.
func (kl *Kubelet) HandlePodAdditions(pods []*v1.Pod) {
	start := groundtruth.MonoNow()
	for _, pod := range pods {
		// Always add the pod to the pod manager. Kubelet relies on the pod
		// manager as the source of truth for the desired state. If a pod does
		// not exist in the pod manager, it means that it has been deleted in
		// the apiserver and no action (other than cleanup) is required.
		kl.podManager.AddPod(pod)

		kl.podWorkers.UpdatePod(UpdatePodOptions{
			Pod:        pod,
			MirrorPod:  nil,
			UpdateType: kubetypes.SyncPodCreate,
			StartTime:  time.Now(),
		})
		if kl.gt != nil {
			kl.gt.Add(groundtruth.Record{
				Stage:     "pod_added",
				PodUID:    string(pod.UID),
				PodName:   pod.Name,
				Namespace: pod.Namespace,
				StartMono: start,
				EndMono:   start,
			})
		}
	}
}

// syncPodSteps is the body of SyncPod (see sync_pod_*.go, one per result
// shape), shared by both shapes; it returns the runtime's sync result.
// (The workload's own function: kubelet's SyncPod holds these steps.)
func (kl *Kubelet) syncPodSteps(ctx context.Context, pod *v1.Pod, podStatus *kubecontainer.PodStatus) (result kubecontainer.PodSyncResult, err error) {
	// Create Cgroups for the pod and apply resource parameters
	// to them if cgroups-per-qos flag is enabled; create a mirror pod for a
	// static pod: stands as a sleep here.
	if kl.podPrepareLatency > 0 {
		time.Sleep(kl.podPrepareLatency)
	}

	// Make data directories for the pod
	if err := kl.makePodDataDirs(pod); err != nil {
		return result, fmt.Errorf("unable to make pod data directories for pod %q: %w", pod.Name, err)
	}

	// Wait for volumes to attach/mount
	mwStart := kl.monoNow()
	err = kl.volumeManager.WaitForAttachAndMount(ctx, pod)
	if kl.gt != nil {
		mwEnd := groundtruth.MonoNow()
		kl.gt.AddStage(ctx, "mount_wait", groundtruth.InMountWait, pod, mwStart, mwEnd,
			groundtruth.KV{K: "poll_checks", V: kl.gt.PollChecks(string(pod.UID))},
			groundtruth.KV{K: "error", V: groundtruth.ErrString(err)})
	}
	if err != nil {
		return result, fmt.Errorf("unable to attach or mount volumes for pod %q: %w", pod.Name, err)
	}

	// Fetch the pull secrets for the pod
	pullSecrets := kl.getPullSecretsForPod(pod)

	// Call the container runtime's SyncPod callback
	rsStart := kl.monoNow()
	result = kl.containerRuntime.SyncPod(ctx, pod, podStatus, pullSecrets, kl.crashLoopBackOff)
	if kl.gt != nil {
		rsEnd := groundtruth.MonoNow()
		kl.gt.AddStage(ctx, "runtime_sync", groundtruth.InRuntimeSync, pod, rsStart, rsEnd,
			groundtruth.KV{K: "error", V: groundtruth.ErrString(result.Error())})
	}
	return result, result.Error()
}

func (kl *Kubelet) monoNow() int64 {
	if kl.gt == nil {
		return 0
	}
	return groundtruth.MonoNow()
}

// getPullSecretsForPod inspects the Pod and retrieves the referenced pull
// secrets (there is no API server: an empty Secret per reference).
func (kl *Kubelet) getPullSecretsForPod(pod *v1.Pod) []v1.Secret {
	pullSecrets := []v1.Secret{}
	for _, secretRef := range pod.Spec.ImagePullSecrets {
		if len(secretRef.Name) == 0 {
			continue
		}
		s := v1.Secret{}
		s.Name = secretRef.Name
		s.Namespace = pod.Namespace
		pullSecrets = append(pullSecrets, s)
	}
	return pullSecrets
}

// setupDataDirs creates:
// 1.  the root directory
// 2.  the pods directory
func (kl *Kubelet) setupDataDirs() error {
	if err := os.MkdirAll(kl.getRootDir(), 0750); err != nil {
		return fmt.Errorf("error creating root directory: %v", err)
	}
	if err := os.MkdirAll(kl.getPodsDir(), 0750); err != nil {
		return fmt.Errorf("error creating pods directory: %v", err)
	}
	return nil
}

// makePodDataDirs creates the dirs for the pod datas.
func (kl *Kubelet) makePodDataDirs(pod *v1.Pod) error {
	uid := pod.UID
	if err := os.MkdirAll(kl.getPodDir(uid), 0750); err != nil && !os.IsExist(err) {
		return err
	}
	if err := os.MkdirAll(kl.getPodVolumesDir(uid), 0750); err != nil && !os.IsExist(err) {
		return err
	}
	if err := os.MkdirAll(kl.getPodPluginsDir(uid), 0750); err != nil && !os.IsExist(err) {
		return err
	}
	return nil
}

// getRootDir returns the full path to the directory under which kubelet can
// store data.
func (kl *Kubelet) getRootDir() string {
	return kl.rootDirectory
}

// getPodsDir returns the full path to the directory under which pod
// directories are created.
func (kl *Kubelet) getPodsDir() string {
	return filepath.Join(kl.getRootDir(), "pods")
}

// getPodDir returns the full path to the per-pod directory for the pod with
// the given UID.
func (kl *Kubelet) getPodDir(podUID types.UID) string {
	return filepath.Join(kl.getPodsDir(), string(podUID))
}

// getPodVolumesDir returns the full path to the per-pod data directory under
// which volumes are created for the specified pod.
func (kl *Kubelet) getPodVolumesDir(podUID types.UID) string {
	return filepath.Join(kl.getPodDir(podUID), "volumes")
}

// getPodPluginsDir returns the full path to the per-pod data directory under
// which plugins may store data for the specified pod.
func (kl *Kubelet) getPodPluginsDir(podUID types.UID) string {
	return filepath.Join(kl.getPodDir(podUID), "plugins")
}
