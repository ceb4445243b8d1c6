package v1

import (
	"testing"
	"unsafe"
)

// The podtrace tracer reads these fields straight out of a *v1.Pod in
// target memory (a real kubelet's and this workload's), so they are a
// contract: see tests/workload/README.md and shared/notes/probe-points.md.
func TestPodLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("offsets are documented for 64-bit platforms")
	}
	var p Pod
	check := func(name string, got, want uintptr) {
		t.Helper()
		if got != want {
			t.Errorf("%s: offset %d, want %d", name, got, want)
		}
	}
	// TypeMeta: two strings.
	check("TypeMeta", unsafe.Offsetof(p.TypeMeta), 0)
	check("Kind", unsafe.Offsetof(p.TypeMeta.Kind), 0)
	check("APIVersion", unsafe.Offsetof(p.TypeMeta.APIVersion), 16)
	check("ObjectMeta", unsafe.Offsetof(p.ObjectMeta), 32)

	om := unsafe.Offsetof(p.ObjectMeta)
	check("Name", om+unsafe.Offsetof(p.ObjectMeta.Name), 32)
	check("GenerateName", om+unsafe.Offsetof(p.ObjectMeta.GenerateName), 48)
	check("Namespace", om+unsafe.Offsetof(p.ObjectMeta.Namespace), 64)
	check("SelfLink", om+unsafe.Offsetof(p.ObjectMeta.SelfLink), 80)
	check("UID", om+unsafe.Offsetof(p.ObjectMeta.UID), 96)
	check("ResourceVersion", om+unsafe.Offsetof(p.ObjectMeta.ResourceVersion), 112)
	check("Generation", om+unsafe.Offsetof(p.ObjectMeta.Generation), 128)
	check("CreationTimestamp", om+unsafe.Offsetof(p.ObjectMeta.CreationTimestamp), 136)
	check("Labels", om+unsafe.Offsetof(p.ObjectMeta.Labels), 176)
	check("ObjectMeta size", unsafe.Sizeof(p.ObjectMeta), 232)
	check("Spec", unsafe.Offsetof(p.Spec), 264)
	check("Spec.Volumes", unsafe.Offsetof(p.Spec)+unsafe.Offsetof(p.Spec.Volumes), 264)
	check("Spec.Containers", unsafe.Offsetof(p.Spec)+unsafe.Offsetof(p.Spec.Containers), 264+48)

	// Every field a tracer may follow is a Go string header {ptr, len}.
	check("UID size", unsafe.Sizeof(p.UID), 16)
	check("Name size", unsafe.Sizeof(p.Name), 16)

	var v Volume
	check("Volume.Name", unsafe.Offsetof(v.Name), 0)
	var c Container
	check("Container.Name", unsafe.Offsetof(c.Name), 0)
	check("Container.Image", unsafe.Offsetof(c.Image), 16)
}
