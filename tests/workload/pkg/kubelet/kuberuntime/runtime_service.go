package kuberuntime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtimeService is the one seam between the runtime manager and a container
// runtime: the three CRI calls a pod start makes. In kubelet this is
// internalapi.RuntimeService (k8s.io/cri-api/pkg/apis), implemented by the
// gRPC client in k8s.io/cri-client (kubelet/cri/remote before 1.31); the
// method signatures here are the real ones.
//
// Implementations: latencyRuntimeService (the default), which sleeps; and
// CRIClient (cri_client.go), which drives a real containerd through the test
// tree's cri-client tool and also implements imageAwareRuntime.
type runtimeService interface {
	// RunPodSandbox creates and starts a pod-level sandbox. Runtimes should ensure
	// the sandbox is in ready state.
	RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error)
	// CreateContainer creates a new container in specified PodSandbox.
	CreateContainer(ctx context.Context, podSandboxID string, config *runtimeapi.ContainerConfig, sandboxConfig *runtimeapi.PodSandboxConfig) (string, error)
	// StartContainer starts the container.
	StartContainer(ctx context.Context, containerID string) error
}

// imageAwareRuntime is implemented by a runtimeService that does a
// container's whole start — PullImage (kubelet: imagePuller.EnsureImageExists
// through the image service), CreateContainer and StartContainer — in one
// round trip of its own (CRIClient: one cri-client process). startContainer
// uses it instead of CreateContainer + StartContainer when present, so the
// three CRI calls still happen inside startContainer.
type imageAwareRuntime interface {
	PullCreateAndStartContainer(ctx context.Context, podSandboxID string, config *runtimeapi.ContainerConfig, sandboxConfig *runtimeapi.PodSandboxConfig) (string, error)
}

// NewLatencyRuntimeService returns a runtimeService whose calls each take
// latency (time.Sleep) and return fresh 64-hex-digit IDs, like containerd's.
func NewLatencyRuntimeService(latency time.Duration) runtimeService {
	return &latencyRuntimeService{latency: latency, sandboxes: map[string]*runtimeapi.PodSandboxConfig{}}
}

type latencyRuntimeService struct {
	latency   time.Duration
	mu        sync.Mutex
	sandboxes map[string]*runtimeapi.PodSandboxConfig
}

func (r *latencyRuntimeService) sleep(ctx context.Context) error {
	if r.latency <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(r.latency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *latencyRuntimeService) RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error) {
	if err := r.sleep(ctx); err != nil {
		return "", err
	}
	id := newID()
	r.mu.Lock()
	r.sandboxes[id] = config
	r.mu.Unlock()
	return id, nil
}

func (r *latencyRuntimeService) CreateContainer(ctx context.Context, podSandboxID string, config *runtimeapi.ContainerConfig, sandboxConfig *runtimeapi.PodSandboxConfig) (string, error) {
	if err := r.sleep(ctx); err != nil {
		return "", err
	}
	return newID(), nil
}

func (r *latencyRuntimeService) StartContainer(ctx context.Context, containerID string) error {
	return r.sleep(ctx)
}

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}
