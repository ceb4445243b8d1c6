package v1

import (
	"reflect"
	"testing"
	"unsafe"
)

// shift is where the first proto field starts: 0 in gogo's layout, 8 in
// protobuf-go's (behind state protoimpl.MessageState).
const shift = 0

// The offsets podtrace's probe catalogue (tracer/catalogue/containerd.toml)
// reads, in the gogo layout; protobuf-go adds shift to each.
func TestLayout(t *testing.T) {
	for _, c := range []struct {
		what string
		got  uintptr
		gogo uintptr
	}{
		{"RunPodSandboxRequest.Config", unsafe.Offsetof(RunPodSandboxRequest{}.Config), 0},
		{"RunPodSandboxRequest.RuntimeHandler", unsafe.Offsetof(RunPodSandboxRequest{}.RuntimeHandler), 8},
		{"PodSandboxConfig.Metadata", unsafe.Offsetof(PodSandboxConfig{}.Metadata), 0},
		{"PodSandboxConfig.Hostname", unsafe.Offsetof(PodSandboxConfig{}.Hostname), 8},
		{"PodSandboxMetadata.Name", unsafe.Offsetof(PodSandboxMetadata{}.Name), 0},
		{"PodSandboxMetadata.Uid", unsafe.Offsetof(PodSandboxMetadata{}.Uid), 16},
		{"PodSandboxMetadata.Namespace", unsafe.Offsetof(PodSandboxMetadata{}.Namespace), 32},
		{"PodSandboxMetadata.Attempt", unsafe.Offsetof(PodSandboxMetadata{}.Attempt), 48},
		{"CreateContainerRequest.PodSandboxId", unsafe.Offsetof(CreateContainerRequest{}.PodSandboxId), 0},
		{"CreateContainerRequest.Config", unsafe.Offsetof(CreateContainerRequest{}.Config), 16},
		{"CreateContainerRequest.SandboxConfig", unsafe.Offsetof(CreateContainerRequest{}.SandboxConfig), 24},
		{"ContainerConfig.Metadata", unsafe.Offsetof(ContainerConfig{}.Metadata), 0},
		{"ContainerMetadata.Name", unsafe.Offsetof(ContainerMetadata{}.Name), 0},
		{"ContainerMetadata.Attempt", unsafe.Offsetof(ContainerMetadata{}.Attempt), 16},
		{"PullImageRequest.Image", unsafe.Offsetof(PullImageRequest{}.Image), 0},
		{"PullImageRequest.Auth", unsafe.Offsetof(PullImageRequest{}.Auth), 8},
		{"PullImageRequest.SandboxConfig", unsafe.Offsetof(PullImageRequest{}.SandboxConfig), 16},
		{"ImageSpec.Image", unsafe.Offsetof(ImageSpec{}.Image), 0},
		{"StartContainerRequest.ContainerId", unsafe.Offsetof(StartContainerRequest{}.ContainerId), 0},
		{"StopContainerRequest.ContainerId", unsafe.Offsetof(StopContainerRequest{}.ContainerId), 0},
		{"StopContainerRequest.Timeout", unsafe.Offsetof(StopContainerRequest{}.Timeout), 16},
		{"RemoveContainerRequest.ContainerId", unsafe.Offsetof(RemoveContainerRequest{}.ContainerId), 0},
		{"StopPodSandboxRequest.PodSandboxId", unsafe.Offsetof(StopPodSandboxRequest{}.PodSandboxId), 0},
		{"RemovePodSandboxRequest.PodSandboxId", unsafe.Offsetof(RemovePodSandboxRequest{}.PodSandboxId), 0},
		{"RunPodSandboxResponse.PodSandboxId", unsafe.Offsetof(RunPodSandboxResponse{}.PodSandboxId), 0},
		{"CreateContainerResponse.ContainerId", unsafe.Offsetof(CreateContainerResponse{}.ContainerId), 0},
		{"PullImageResponse.ImageRef", unsafe.Offsetof(PullImageResponse{}.ImageRef), 0},
	} {
		if c.got != c.gogo+shift {
			t.Errorf("%s at offset %d, want %d", c.what, c.got, c.gogo+shift)
		}
	}
}

// The generated methods that tell the two generators apart (podtrace's
// when_symbol looks for (*RunPodSandboxRequest).ProtoReflect).
func TestGeneratedMethods(t *testing.T) {
	typ := reflect.TypeOf(&RunPodSandboxRequest{})
	has := func(name string) bool { _, ok := typ.MethodByName(name); return ok }
	for _, m := range []string{"Reset", "String", "ProtoMessage", "Descriptor"} {
		if !has(m) {
			t.Errorf("(*RunPodSandboxRequest).%s missing", m)
		}
	}
	protobufGo := shift == 8
	for _, m := range []string{"XXX_Unmarshal", "XXX_Size", "Marshal", "Unmarshal"} {
		if has(m) == protobufGo {
			t.Errorf("(*RunPodSandboxRequest).%s present: %v, want %v", m, has(m), !protobufGo)
		}
	}
	if has("ProtoReflect") != protobufGo {
		t.Errorf("(*RunPodSandboxRequest).ProtoReflect present: %v, want %v", has("ProtoReflect"), protobufGo)
	}
}

// A message survives the codec round trip, including every traced field.
func TestCodecRoundTrip(t *testing.T) {
	in := &CreateContainerRequest{
		PodSandboxId: "sb",
		Config:       &ContainerConfig{Metadata: &ContainerMetadata{Name: "c", Attempt: 2}, Image: &ImageSpec{Image: "img"}},
		SandboxConfig: &PodSandboxConfig{Metadata: &PodSandboxMetadata{
			Name: "p", Uid: "u", Namespace: "n", Attempt: 3,
		}},
	}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := new(CreateContainerRequest)
	if err := Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	md := out.GetSandboxConfig().GetMetadata()
	if out.PodSandboxId != "sb" || out.GetConfig().GetMetadata().GetName() != "c" ||
		out.GetConfig().GetImage().GetImage() != "img" ||
		md.GetName() != "p" || md.GetUid() != "u" || md.GetNamespace() != "n" || md.GetAttempt() != 3 {
		t.Errorf("round trip lost fields: %s", out.String())
	}
}
