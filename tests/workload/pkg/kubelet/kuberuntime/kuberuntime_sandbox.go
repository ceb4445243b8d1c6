package kuberuntime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"k8s.io/kubernetes/internal/groundtruth"
)

// createPodSandbox creates a pod sandbox and returns (podSandBoxID, message, error).
//
// Entry (amd64): RAX=m, RBX/RCX=ctx, RDI=pod, RSI=attempt. Returns the
// sandbox ID in RAX/RBX, the message in RCX/RDI, the error in RSI/R8.
//
// noinline: the real one is too large to inline; ours is small.
//
//go:noinline
func (m *kubeGenericRuntimeManager) createPodSandbox(ctx context.Context, pod *v1.Pod, attempt uint32) (string, string, error) {
	defer groundtruth.Enter(ctx, groundtruth.InCreateSandbox)() // the workload's, not kubelet's
	podSandboxConfig, err := m.generatePodSandboxConfig(pod, attempt)
	if err != nil {
		message := fmt.Sprintf("Failed to generate sandbox config for pod %q: %v", pod.Name, err)
		return "", message, err
	}

	// Create pod logs directory
	err = os.MkdirAll(podSandboxConfig.LogDirectory, 0755)
	if err != nil {
		message := fmt.Sprintf("Failed to create log directory for pod %q: %v", pod.Name, err)
		return "", message, err
	}

	runtimeHandler := ""
	podSandBoxID, err := m.runtimeService.RunPodSandbox(ctx, podSandboxConfig, runtimeHandler)
	if err != nil {
		message := fmt.Sprintf("Failed to create sandbox for pod %q: %v", pod.Name, err)
		return "", message, err
	}

	return podSandBoxID, "", nil
}

// generatePodSandboxConfig generates pod sandbox config from v1.Pod.
func (m *kubeGenericRuntimeManager) generatePodSandboxConfig(pod *v1.Pod, attempt uint32) (*runtimeapi.PodSandboxConfig, error) {
	podUID := string(pod.UID)
	podSandboxConfig := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      pod.Name,
			Namespace: pod.Namespace,
			Uid:       podUID,
			Attempt:   attempt,
		},
		Labels:      map[string]string{"io.kubernetes.pod.name": pod.Name, "io.kubernetes.pod.namespace": pod.Namespace, "io.kubernetes.pod.uid": podUID},
		Annotations: pod.Annotations,
	}
	if !pod.Spec.HostNetwork {
		podSandboxConfig.Hostname = pod.Name
	}
	podSandboxConfig.LogDirectory = filepath.Join(m.podLogsDirectory, pod.Namespace+"_"+pod.Name+"_"+podUID)
	return podSandboxConfig, nil
}
