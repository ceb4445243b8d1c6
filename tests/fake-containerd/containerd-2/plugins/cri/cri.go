// Package cri assembles the CRI plugin: the runtime service and the image
// service's gRPC face behind one instrumented service.
package cri

import (
	"github.com/containerd/containerd/v2/internal/cri/instrument"
	"github.com/containerd/containerd/v2/internal/cri/server"
	"github.com/containerd/containerd/v2/internal/cri/server/images"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criGRPCServer is what the CRI gRPC server serves.
type criGRPCServer struct {
	runtime.RuntimeServiceServer
	runtime.ImageServiceServer
	initializer interface{ IsInitialized() bool }
}

func (s *criGRPCServer) IsInitialized() bool { return s.initializer.IsInitialized() }

// NewService builds the CRI plugin's services; registry is the fake
// registry's content.
func NewService(registry []string) instrument.GRPCServices {
	imageService := images.NewService(registry)
	rs, err := server.NewCRIService(imageService)
	if err != nil {
		panic(err)
	}
	return instrument.NewService(&criGRPCServer{
		RuntimeServiceServer: rs,
		ImageServiceServer:   imageService.GRPCService(),
		initializer:          rs,
	})
}
