package operationexecutor

import (
	"reflect"
	"testing"
	"unsafe"
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
	if n := intRegs(reflect.TypeOf(o)); n <= 15 {
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
