package operationexecutor

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
	"unsafe"

	v1 "k8s.io/api/core/v1"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/util/nestedpendingoperations"
	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// TestMarkVolumeOptsLayout pins the offsets podtrace relies on when it reads
// MarkVolumeOpts from the stack at entry to MarkVolumeAsMounted (struct start
// = SP+8 on amd64), and checks that the struct is too big for the Go
// register ABI, so that it really is passed on the stack.
func TestMarkVolumeOptsLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("offsets are documented for 64-bit platforms")
	}
	var o MarkVolumeOpts
	want := []struct {
		name string
		got  uintptr
		off  uintptr
	}{
		{"PodName", unsafe.Offsetof(o.PodName), 0},
		{"PodUID", unsafe.Offsetof(o.PodUID), 16},
		{"VolumeName", unsafe.Offsetof(o.VolumeName), 32},
		{"Mounter", unsafe.Offsetof(o.Mounter), 48},
		{"BlockVolumeMapper", unsafe.Offsetof(o.BlockVolumeMapper), 64},
		{"OuterVolumeSpecName", unsafe.Offsetof(o.OuterVolumeSpecName), 80},
		{"VolumeGidVolume", unsafe.Offsetof(o.VolumeGidVolume), 96},
		{"VolumeSpec", unsafe.Offsetof(o.VolumeSpec), 112},
		{"VolumeMountState", unsafe.Offsetof(o.VolumeMountState), 120},
		{"SELinuxMountContext", unsafe.Offsetof(o.SELinuxMountContext), 136},
	}
	for _, w := range want {
		if w.got != w.off {
			t.Errorf("MarkVolumeOpts.%s at offset %d, want %d", w.name, w.got, w.off)
		}
	}
	if s := unsafe.Sizeof(o); s != 152 {
		t.Errorf("sizeof(MarkVolumeOpts) = %d, want 152", s)
	}

	// Go internal ABI (cmd/compile/abi-internal.md): a struct argument is
	// register-assigned only if all of its fields fit in the remaining
	// integer registers (9 on amd64, 16 on arm64; the receiver already took
	// one). Count the integer registers it would need.
	n := intRegs(reflect.TypeOf(o))
	if n != 19 {
		t.Errorf("MarkVolumeOpts is %d words, want 19 (kubelet 1.27-1.35's; the README says 19)", n)
	}
	if n <= 15 {
		t.Errorf("MarkVolumeOpts needs only %d integer registers; it might be register-assigned", n)
	} else {
		t.Logf("MarkVolumeOpts needs %d integer registers > 8 (amd64) / 15 (arm64) left after the receiver: passed on the stack", n)
	}
}

func intRegs(t reflect.Type) int {
	switch t.Kind() {
	case reflect.String, reflect.Interface:
		return 2
	case reflect.Slice:
		return 3
	case reflect.Ptr, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr, reflect.Bool:
		return 1
	case reflect.Struct:
		n := 0
		for i := 0; i < t.NumField(); i++ {
			n += intRegs(t.Field(i).Type)
		}
		return n
	case reflect.Array:
		return t.Len() * intRegs(t.Elem())
	}
	return 0
}

// recordingASW is an ActualStateOfWorldMounterUpdater that records the
// goroutine each MarkVolumeAsMounted ran on.
type recordingASW struct {
	marked chan int64
	block  chan struct{}
}

func (r *recordingASW) MarkVolumeAsMounted(opts MarkVolumeOpts) error {
	<-r.block
	r.marked <- groundtruth.Goid()
	return nil
}

// As in kubelet, a mount runs on a goroutine of the executor's (not the
// caller's, the reconciler's) and marks the volume mounted through the
// ActualStateOfWorldMounterUpdater interface; while it runs, the same
// volume's next mount is refused.
func TestMountVolumeMarksMountedOnAnOperationGoroutine(t *testing.T) {
	dir := t.TempDir()
	var errs []string
	oe := NewOperationExecutor(NewOperationGenerator(dir, func(_ volumetypes.UniquePodName, e string) { errs = append(errs, e) }, nil))
	pod := &v1.Pod{}
	pod.UID = "uid-1"
	vol := &v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}
	vtm := VolumeToMount{
		VolumeName:          "kubernetes.io/empty-dir/uid-1-scratch",
		PodName:             "uid-1",
		VolumeSpec:          volume.NewSpecFromVolume(vol),
		OuterVolumeSpecName: "scratch",
		Pod:                 pod,
	}
	asw := &recordingASW{marked: make(chan int64, 2), block: make(chan struct{})}
	if err := oe.MountVolume(time.Minute, vtm, asw, false); err != nil {
		t.Fatalf("MountVolume: %v", err)
	}
	if !oe.IsOperationPending(vtm.VolumeName, vtm.PodName, "") {
		t.Errorf("the mount is not pending while it runs")
	}
	if err := oe.MountVolume(time.Minute, vtm, asw, false); !nestedpendingoperations.IsAlreadyExists(err) {
		t.Errorf("a second mount of a pending volume: %v, want AlreadyExists", err)
	}
	close(asw.block)
	select {
	case g := <-asw.marked:
		if me := groundtruth.Goid(); g == me || g == 0 {
			t.Errorf("MarkVolumeAsMounted ran on goroutine %d, the caller is %d", g, me)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("MarkVolumeAsMounted never ran")
	}
	if len(errs) != 0 {
		t.Errorf("errors reported: %v", errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "uid-1", "volumes", "kubernetes.io~empty-dir", "scratch")); err != nil {
		t.Errorf("SetUp made no volume directory: %v", err)
	}
}
