package kuberuntime

import (
	"context"
	"fmt"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"k8s.io/kubernetes/internal/groundtruth"
	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
)

// startSpec wraps the spec required to start a container, either a regular/init container
// or an ephemeral container. Ephemeral containers contain all the fields of regular/init
// containers, plus some additional fields. In both cases startSpec.container will be set.
// Offsets: container 0 (a *v1.Container, whose Name is at 0).
type startSpec struct {
	container          *v1.Container
	ephemeralContainer *v1.EphemeralContainer
	target             *kubecontainer.ContainerID
}

func containerStartSpec(c *v1.Container) *startSpec {
	return &startSpec{container: c}
}

// startContainer starts a container and returns a message indicates why it is failed on error.
// It starts the container through the following steps:
// * pull the image (not modelled)
// * create the container
// * start the container
// * run the post start lifecycle hooks (if applicable)
//
// On success the message is the container ID (the workload's ground truth
// uses it; kubelet returns "").
//
// Entry (amd64): RAX=m, RBX/RCX=ctx, RDI/RSI=podSandboxID, R8=podSandboxConfig,
// R9=spec, R10=pod, R11=podStatus; registers are exhausted, so pullSecrets
// (SP+8, 24 bytes), podIP (SP+32) and podIPs (SP+48) are on the stack.
// Returns the message in RAX/RBX and the error in RCX/RDI.
//
// Kubernetes 1.31+ has one more trailing parameter,
// imageVolumes kubecontainer.ImageVolumes (a map: one word, on the stack at
// SP+72); it changes none of the registers above.
//
// noinline: the real one is too large to inline; ours is small.
//
//go:noinline
func (m *kubeGenericRuntimeManager) startContainer(ctx context.Context, podSandboxID string, podSandboxConfig *runtimeapi.PodSandboxConfig, spec *startSpec, pod *v1.Pod, podStatus *kubecontainer.PodStatus, pullSecrets []v1.Secret, podIP string, podIPs []string) (string, error) {
	defer groundtruth.Enter(ctx, groundtruth.InStartContainer)() // the workload's, not kubelet's
	container := spec.container

	// Step 1: pull the image. (Not modelled: the image is "present"; a
	// runtimeService that is an imageAwareRuntime pulls it below.)

	// Step 2: create the container.
	// For a new container, the RestartCount should be 0
	restartCount := 0
	containerConfig, err := m.generateContainerConfig(ctx, container, pod, restartCount, podIP, podIPs)
	if err != nil {
		return fmt.Sprintf("CreateContainerConfigError: %v", err), err
	}
	// A real runtime behind cri-client: pull, create and start in one go.
	if r, ok := m.runtimeService.(imageAwareRuntime); ok {
		containerID, err := r.PullCreateAndStartContainer(ctx, podSandboxID, containerConfig, podSandboxConfig)
		if err != nil {
			return fmt.Sprintf("RunContainerError: %v", err), err
		}
		return containerID, nil
	}
	containerID, err := m.runtimeService.CreateContainer(ctx, podSandboxID, containerConfig, podSandboxConfig)
	if err != nil {
		return fmt.Sprintf("CreateContainerError: %v", err), err
	}

	// Step 3: start the container.
	err = m.runtimeService.StartContainer(ctx, containerID)
	if err != nil {
		return fmt.Sprintf("RunContainerError: %v", err), err
	}

	return containerID, nil
}

// generateContainerConfig generates container config for kubelet runtime v1.
func (m *kubeGenericRuntimeManager) generateContainerConfig(ctx context.Context, container *v1.Container, pod *v1.Pod, restartCount int, podIP string, podIPs []string) (*runtimeapi.ContainerConfig, error) {
	config := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{
			Name:    container.Name,
			Attempt: uint32(restartCount),
		},
		Image:      &runtimeapi.ImageSpec{Image: container.Image},
		Command:    container.Command,
		Args:       container.Args,
		WorkingDir: container.WorkingDir,
		Labels:     map[string]string{"io.kubernetes.container.name": container.Name, "io.kubernetes.pod.uid": string(pod.UID)},
		LogPath:    filepath.Join(container.Name, fmt.Sprintf("%d.log", restartCount)),
		Stdin:      container.Stdin,
		StdinOnce:  container.StdinOnce,
		Tty:        container.TTY,
	}
	for _, e := range container.Env {
		config.Envs = append(config.Envs, &runtimeapi.KeyValue{Key: e.Name, Value: e.Value})
	}
	for _, vm := range container.VolumeMounts {
		config.Mounts = append(config.Mounts, &runtimeapi.Mount{ContainerPath: vm.MountPath, Readonly: vm.ReadOnly})
	}
	return config, nil
}
