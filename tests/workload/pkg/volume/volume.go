// Package volume is the subset of k8s.io/kubernetes/pkg/volume the podtrace
// workload needs: the interfaces that appear (as interface-typed fields) in
// operationexecutor.MarkVolumeOpts, and Spec.
package volume

import v1 "k8s.io/api/core/v1"

// Volume represents a directory used by pods or hosts on a node.
type Volume interface {
	// GetPath returns the path to which the volume should be mounted for the pod.
	GetPath() string
}

// MounterArgs provides more easily extensible arguments to Mounter.
type MounterArgs struct {
	FsUser       *int64
	FsGroup      *int64
	DesiredSize  *int64
	SELinuxLabel string
}

// Mounter interface provides methods to set up/mount the volume.
type Mounter interface {
	Volume
	// SetUp prepares and mounts/unpacks the volume to a self-determined directory path.
	SetUp(mounterArgs MounterArgs) error
}

// BlockVolumeMapper interface is a mapper interface for block volume.
type BlockVolumeMapper interface {
	Volume
}

// Spec is an internal representation of a volume. All API volume types translate to Spec.
type Spec struct {
	Volume                          *v1.Volume
	PersistentVolume                *v1.PersistentVolume
	ReadOnly                        bool
	InlineVolumeSpecForCSIMigration bool
	Migrated                        bool
}

// Name returns the name of either Volume or PersistentVolume, one of which must not be nil.
func (spec *Spec) Name() string {
	switch {
	case spec.Volume != nil:
		return spec.Volume.Name
	case spec.PersistentVolume != nil:
		return spec.PersistentVolume.Name
	default:
		return ""
	}
}

// NewSpecFromVolume creates an Spec from an v1.Volume.
func NewSpecFromVolume(vs *v1.Volume) *Spec {
	return &Spec{Volume: vs}
}
