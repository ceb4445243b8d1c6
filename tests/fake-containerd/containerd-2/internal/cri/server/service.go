// Package server is the fake CRI runtime service behind the instrumented
// service: sandboxes and containers live in memory, and every handler
// spends 1-3 ms (where the real one would talk to runc and the
// snapshotter) before it answers. Images are package images' business.
package server

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/internal/cri/util"
	"github.com/containerd/containerd/v2/internal/errdefs"
	"github.com/containerd/containerd/v2/internal/log"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageService is what the runtime service needs of the image service.
type ImageService interface {
	// LocalResolve returns the name of a pulled image, by reference.
	LocalResolve(ref string) (string, error)
}

// CRIService is the CRI runtime service.
type CRIService interface {
	runtime.RuntimeServiceServer
	IsInitialized() bool
}

type sandbox struct {
	id, name string
	metadata *runtime.PodSandboxMetadata
	ready    bool
}

type container struct {
	id, sandboxID, name, imageRef string
	running                       bool
}

type criService struct {
	initialized atomic.Bool

	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	names      map[string]string // reserved sandbox and container names -> id
	containers map[string]*container
	images     ImageService
}

// NewCRIService returns the fake CRI runtime service.
func NewCRIService(images ImageService) (CRIService, error) {
	c := &criService{
		sandboxes:  map[string]*sandbox{},
		names:      map[string]string{},
		containers: map[string]*container{},
		images:     images,
	}
	c.initialized.Store(true)
	return c, nil
}

func (c *criService) IsInitialized() bool { return c.initialized.Load() }

// latency sleeps 1-3 ms, the same for the same operation on the same object.
func latency(op, key string) {
	h := fnv.New32a()
	h.Write([]byte(op))
	h.Write([]byte(key))
	time.Sleep(time.Millisecond + time.Duration(h.Sum32()%2000)*time.Microsecond)
}

func makeSandboxName(s *runtime.PodSandboxMetadata) string {
	return strings.Join([]string{s.Name, s.Namespace, s.Uid, strconv.FormatUint(uint64(s.Attempt), 10)}, "_")
}

func (c *criService) reserve(name, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.names[name]; ok {
		return fmt.Errorf("name %q is reserved for %q", name, old)
	}
	c.names[name] = id
	return nil
}

func (c *criService) sandbox(id string) (*sandbox, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sandboxes[id]
	if !ok {
		return nil, fmt.Errorf("an error occurred when try to find sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return s, nil
}

func (c *criService) container(id string) (*container, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctr, ok := c.containers[id]
	if !ok {
		return nil, fmt.Errorf("an error occurred when try to find container %q: %w", id, errdefs.ErrNotFound)
	}
	return ctr, nil
}

// RunPodSandbox creates and starts a pod-level sandbox.
func (c *criService) RunPodSandbox(ctx context.Context, r *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	metadata := r.GetConfig().GetMetadata()
	if metadata == nil {
		return nil, fmt.Errorf("sandbox config must include metadata")
	}
	id := util.GenerateID()
	name := makeSandboxName(metadata)
	log.G(ctx).Debugf("Generated id %q for sandbox %q", id, name)
	if err := c.reserve(name, id); err != nil {
		return nil, fmt.Errorf("failed to reserve sandbox name %q: %w", name, err)
	}
	latency("RunPodSandbox", metadata.Uid)
	c.mu.Lock()
	c.sandboxes[id] = &sandbox{id: id, name: name, metadata: metadata, ready: true}
	c.mu.Unlock()
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// StopPodSandbox stops the sandbox.
func (c *criService) StopPodSandbox(ctx context.Context, r *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	s, err := c.sandbox(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	latency("StopPodSandbox", s.id)
	c.mu.Lock()
	s.ready = false
	c.mu.Unlock()
	return &runtime.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes the sandbox.
func (c *criService) RemovePodSandbox(ctx context.Context, r *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	s, err := c.sandbox(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if s.ready {
		return nil, fmt.Errorf("sandbox container %q is not fully stopped", s.id)
	}
	latency("RemovePodSandbox", s.id)
	c.mu.Lock()
	delete(c.sandboxes, s.id)
	delete(c.names, s.name)
	c.mu.Unlock()
	return &runtime.RemovePodSandboxResponse{}, nil
}

// CreateContainer creates a new container in the given sandbox.
func (c *criService) CreateContainer(ctx context.Context, r *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	s, err := c.sandbox(r.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("failed to find sandbox id %q: %w", r.GetPodSandboxId(), err)
	}
	metadata := r.GetConfig().GetMetadata()
	if metadata == nil {
		return nil, fmt.Errorf("container config must include metadata")
	}
	image := r.GetConfig().GetImage().GetImage()
	if _, err := c.images.LocalResolve(image); err != nil {
		return nil, fmt.Errorf("failed to resolve image %q: %w", image, err)
	}
	id := util.GenerateID()
	name := strings.Join([]string{metadata.Name, s.metadata.Name, s.metadata.Namespace, s.metadata.Uid,
		strconv.FormatUint(uint64(metadata.Attempt), 10)}, "_")
	if err := c.reserve(name, id); err != nil {
		return nil, fmt.Errorf("failed to reserve container name %q: %w", name, err)
	}
	latency("CreateContainer", id)
	c.mu.Lock()
	c.containers[id] = &container{id: id, sandboxID: s.id, name: name, imageRef: image}
	c.mu.Unlock()
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer starts the container.
func (c *criService) StartContainer(ctx context.Context, r *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	ctr, err := c.container(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	latency("StartContainer", ctr.id)
	c.mu.Lock()
	ctr.running = true
	c.mu.Unlock()
	return &runtime.StartContainerResponse{}, nil
}

// StopContainer stops a running container.
func (c *criService) StopContainer(ctx context.Context, r *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	ctr, err := c.container(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	latency("StopContainer", ctr.id)
	c.mu.Lock()
	ctr.running = false
	c.mu.Unlock()
	return &runtime.StopContainerResponse{}, nil
}

// RemoveContainer removes the container.
func (c *criService) RemoveContainer(ctx context.Context, r *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	ctr, err := c.container(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if ctr.running {
		return nil, fmt.Errorf("container %q is running, stop it first", ctr.id)
	}
	latency("RemoveContainer", ctr.id)
	c.mu.Lock()
	delete(c.containers, ctr.id)
	delete(c.names, ctr.name)
	c.mu.Unlock()
	return &runtime.RemoveContainerResponse{}, nil
}
