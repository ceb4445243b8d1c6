// Package kuberuntime models k8s.io/kubernetes/pkg/kubelet/kuberuntime: the
// runtime manager that turns a pod into CRI calls.
package kuberuntime

import (
	"context"
	"fmt"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/flowcontrol"

	"k8s.io/kubernetes/internal/groundtruth"
	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
)

const (
	// The api version of kubelet runtime api
	kubeRuntimeAPIVersion = "0.1.0"
)

type kubeGenericRuntimeManager struct {
	runtimeName string

	// podLogsDirectory is where pod sandbox log directories are created
	// (kubelet: /var/log/pods).
	podLogsDirectory string

	// gRPC service clients
	runtimeService runtimeService

	gt *groundtruth.Recorder

	podIPCounter uint32
}

// KubeGenericRuntime is a interface contains interfaces for container runtime and command.
type KubeGenericRuntime interface {
	kubecontainer.Runtime
}

// NewKubeGenericRuntimeManager creates a new kubeGenericRuntimeManager.
// gt may be nil.
func NewKubeGenericRuntimeManager(rs runtimeService, podLogsDirectory string, gt *groundtruth.Recorder) KubeGenericRuntime {
	return &kubeGenericRuntimeManager{
		runtimeName:      "podtrace-latency",
		podLogsDirectory: podLogsDirectory,
		runtimeService:   rs,
		gt:               gt,
	}
}

// Type returns the type of the container runtime.
func (m *kubeGenericRuntimeManager) Type() string {
	return m.runtimeName
}

// GetPods returns a list of containers grouped by pods (none are tracked
// here; PLEG lists pod directories instead).
func (m *kubeGenericRuntimeManager) GetPods(ctx context.Context, all bool) ([]*kubecontainer.Pod, error) {
	return nil, nil
}

// podActions keeps information what to do for a pod.
type podActions struct {
	// Stop all running (regular, init and ephemeral) containers and the sandbox for the pod.
	KillPod bool
	// Whether need to create a new sandbox. If needed to kill pod and create
	// a new pod sandbox, all init containers need to be purged (i.e., removed).
	CreateSandbox bool
	// The id of existing sandbox. It is used for starting containers in ContainersToStart.
	SandboxID string
	// The attempt number of creating sandboxes for the pod.
	Attempt uint32
	// ContainersToStart keeps a list of indexes for the containers to start,
	// where the index is the index of the specific container in the pod spec (
	// pod.Spec.Containers).
	ContainersToStart []int
}

// computePodActions checks whether the pod spec has changed and returns the changes if true.
// (Here: a pod without a sandbox gets one, and all its containers start.)
func (m *kubeGenericRuntimeManager) computePodActions(ctx context.Context, pod *v1.Pod, podStatus *kubecontainer.PodStatus) podActions {
	changes := podActions{
		KillPod:           true,
		CreateSandbox:     len(podStatus.SandboxStatuses) == 0,
		Attempt:           uint32(len(podStatus.SandboxStatuses)),
		ContainersToStart: []int{},
	}
	if !changes.CreateSandbox {
		changes.SandboxID = podStatus.SandboxStatuses[0]
		changes.KillPod = false
	}
	for idx := range pod.Spec.Containers {
		changes.ContainersToStart = append(changes.ContainersToStart, idx)
	}
	return changes
}

// SyncPod syncs the running pod into the desired pod by executing following steps:
//
//  1. Compute sandbox and container changes.
//  2. Kill pod sandbox if necessary.
//  3. Kill any containers that should not be running.
//  4. Create sandbox if necessary.
//  5. Create ephemeral containers.
//  6. Create init containers.
//  7. Resize running containers (if InPlacePodVerticalScaling==true)
//  8. Create normal containers.
//
// Entry (amd64): RAX=m, RBX/RCX=ctx, RDI=pod, RSI=podStatus,
// R8/R9/R10=pullSecrets, R11=backOff. Result (PodSyncResult: a slice and an
// error) in RAX/RBX/RCX (SyncResults) and RDI/RSI (SyncError).
//
// noinline: kubelet's is far too large to inline; ours is smaller.
//
//go:noinline
func (m *kubeGenericRuntimeManager) SyncPod(ctx context.Context, pod *v1.Pod, podStatus *kubecontainer.PodStatus, pullSecrets []v1.Secret, backOff *flowcontrol.Backoff) (result kubecontainer.PodSyncResult) {
	defer groundtruth.Enter(ctx, groundtruth.InRuntimeSync)() // the workload's, not kubelet's
	// Step 1: Compute sandbox and container changes.
	podContainerChanges := m.computePodActions(ctx, pod, podStatus)

	// Step 4: Create a sandbox for the pod if necessary.
	podSandboxID := podContainerChanges.SandboxID
	if podContainerChanges.CreateSandbox {
		var msg string
		var err error

		createSandboxResult := kubecontainer.NewSyncResult(kubecontainer.CreatePodSandbox, pod.Name)
		result.AddSyncResult(createSandboxResult)

		start := m.monoNow()
		podSandboxID, msg, err = m.createPodSandbox(ctx, pod, podContainerChanges.Attempt)
		if m.gt != nil {
			end := groundtruth.MonoNow()
			m.gt.AddStage(ctx, "create_sandbox", groundtruth.InCreateSandbox, pod, start, end,
				groundtruth.KV{K: "sandbox_id", V: podSandboxID},
				groundtruth.KV{K: "attempt", V: podContainerChanges.Attempt})
		}
		if err != nil {
			createSandboxResult.Fail(err, msg)
			return
		}
	}

	// Get podSandboxConfig for containers to start.
	configPodSandboxResult := kubecontainer.NewSyncResult(kubecontainer.ConfigPodSandbox, podSandboxID)
	result.AddSyncResult(configPodSandboxResult)
	podSandboxConfig, err := m.generatePodSandboxConfig(pod, podContainerChanges.Attempt)
	if err != nil {
		message := fmt.Sprintf("GeneratePodSandboxConfig for pod %q failed: %v", pod.Name, err)
		configPodSandboxResult.Fail(err, message)
		return
	}
	n := atomic.AddUint32(&m.podIPCounter, 1)
	podIP := fmt.Sprintf("10.244.%d.%d", (n/250)%250, n%250+2)
	podIPs := []string{podIP}

	// Helper containing boilerplate common to starting all types of containers.
	// typeName is a description used to describe this type of container in log messages,
	// currently: "container", "init container" or "ephemeral container"
	// metricLabel is the label used to describe this type of container in monitoring metrics.
	// currently: "container", "init_container" or "ephemeral_container"
	start := func(ctx context.Context, typeName, metricLabel string, spec *startSpec) error {
		startContainerResult := kubecontainer.NewSyncResult(kubecontainer.StartContainer, spec.container.Name)
		result.AddSyncResult(startContainerResult)

		t0 := m.monoNow()
		msg, err := m.startContainer(ctx, podSandboxID, podSandboxConfig, spec, pod, podStatus, pullSecrets, podIP, podIPs)
		if m.gt != nil {
			t1 := groundtruth.MonoNow()
			m.gt.AddStage(ctx, "start_container", groundtruth.InStartContainer, pod, t0, t1,
				groundtruth.KV{K: "container", V: spec.container.Name},
				groundtruth.KV{K: "container_id", V: msg},
				groundtruth.KV{K: "sandbox_id", V: podSandboxID})
		}
		if err != nil {
			startContainerResult.Fail(err, msg)
			return err
		}
		return nil
	}

	// Step 8: start containers in podContainerChanges.ContainersToStart.
	for _, idx := range podContainerChanges.ContainersToStart {
		_ = start(ctx, "container", "container", containerStartSpec(&pod.Spec.Containers[idx]))
	}

	return
}

func (m *kubeGenericRuntimeManager) monoNow() int64 {
	if m.gt == nil {
		return 0
	}
	return groundtruth.MonoNow()
}
