// Package images is the fake CRI image service: containerd 2.x moved image
// pulls out of the CRI runtime service into this package, with a gRPC-facing
// GRPCCRIImageService over the CRIImageService that does the work.
package images

import (
	"podtrace.test/fake-containerd/driver"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/internal/errdefs"
	"github.com/containerd/containerd/v2/internal/log"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRIImageService pulls images from the fake registry and keeps the
// pulled ones.
type CRIImageService struct {
	mu       sync.Mutex
	registry map[string]bool
	images   map[string]string // image ref -> name
}

// GRPCCRIImageService is the CRI image service's gRPC face.
type GRPCCRIImageService struct {
	*CRIImageService
}

// NewService returns the image service; registry is the fake registry's
// content (pulling anything else fails).
func NewService(registry []string) *CRIImageService {
	c := &CRIImageService{registry: map[string]bool{}, images: map[string]string{}}
	for _, image := range registry {
		c.registry[image] = true
	}
	return c
}

// GRPCService returns the gRPC-facing image service.
func (c *CRIImageService) GRPCService() runtime.ImageServiceServer {
	return &GRPCCRIImageService{c}
}

// PullImage is the CRI PullImage handler.
//
//go:noinline
func (c *GRPCCRIImageService) PullImage(ctx context.Context, r *runtime.PullImageRequest) (_ *runtime.PullImageResponse, err error) {
	defer driver.Enter(ctx)() // ground truth from inside the handler (the test's, not containerd's)
	imageRef := r.GetImage().GetImage()
	credentials := func(host string) (string, string, error) {
		auth := r.GetAuth()
		if auth == nil {
			return "", "", nil
		}
		return auth.Username, auth.Password, nil
	}
	ref, err := c.CRIImageService.PullImage(ctx, imageRef, credentials, r.SandboxConfig, r.GetImage().GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: ref}, nil
}

// PullImage pulls name and returns its image reference. It spends 1-3 ms,
// where the real one would talk to the registry and unpack layers.
func (c *CRIImageService) PullImage(ctx context.Context, name string, credentials func(string) (string, string, error),
	sandboxConfig *runtime.PodSandboxConfig, runtimeHandler string) (string, error) {
	if _, _, err := credentials("registry.k8s.io"); err != nil {
		return "", err
	}
	h := fnv.New32a()
	h.Write([]byte("PullImage"))
	h.Write([]byte(name))
	time.Sleep(time.Millisecond + time.Duration(h.Sum32()%2000)*time.Microsecond)
	if !c.registry[name] {
		return "", fmt.Errorf("failed to pull and unpack image %q: failed to resolve reference %q: %q: %w",
			name, name, name, errdefs.ErrNotFound)
	}
	sum := sha256.Sum256([]byte(name))
	ref := "sha256:" + hex.EncodeToString(sum[:])
	c.mu.Lock()
	c.images[ref] = name
	c.mu.Unlock()
	log.G(ctx).Debugf("Pulled image %q with image id %q, for pod %q", name, ref, sandboxConfig.GetMetadata().GetName())
	return ref, nil
}

// LocalResolve returns the name of a pulled image, by reference.
func (c *CRIImageService) LocalResolve(ref string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name, ok := c.images[ref]
	if !ok {
		return "", fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	return name, nil
}
