package kubelet

import (
	"testing"
	"unsafe"

	v1 "k8s.io/api/core/v1"

	"k8s.io/kubernetes/pkg/volume/util/operationexecutor"
)

// The same contract as k8s.io/api/core/v1's TestPodLayout and
// operationexecutor's TestMarkVolumeOptsLayout, repeated here so that
// `go test ./...` in the main module covers it (the staging modules are
// separate modules).
func TestTracerVisibleLayouts(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("64-bit only")
	}
	var p v1.Pod
	// Offsetof of a promoted field (p.Name) is relative to the Pod.
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"Pod.Name", unsafe.Offsetof(p.Name), 32},
		{"Pod.GenerateName", unsafe.Offsetof(p.GenerateName), 48},
		{"Pod.Namespace", unsafe.Offsetof(p.Namespace), 64},
		{"Pod.SelfLink", unsafe.Offsetof(p.SelfLink), 80},
		{"Pod.UID", unsafe.Offsetof(p.UID), 96},
		{"Pod.Spec", unsafe.Offsetof(p.Spec), 264},
		{"MarkVolumeOpts.PodName", unsafe.Offsetof(operationexecutor.MarkVolumeOpts{}.PodName), 0},
		{"MarkVolumeOpts.PodUID", unsafe.Offsetof(operationexecutor.MarkVolumeOpts{}.PodUID), 16},
		{"MarkVolumeOpts.VolumeName", unsafe.Offsetof(operationexecutor.MarkVolumeOpts{}.VolumeName), 32},
		{"MarkVolumeOpts.OuterVolumeSpecName", unsafe.Offsetof(operationexecutor.MarkVolumeOpts{}.OuterVolumeSpecName), 80},
		{"sizeof(MarkVolumeOpts)", unsafe.Sizeof(operationexecutor.MarkVolumeOpts{}), 152},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
}
