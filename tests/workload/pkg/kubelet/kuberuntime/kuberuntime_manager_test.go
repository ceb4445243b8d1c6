package kuberuntime

import (
	"context"
	"reflect"
	"runtime"
	"testing"
	"unsafe"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
)

func TestProbedSymbolNames(t *testing.T) {
	const pkg = "k8s.io/kubernetes/pkg/kubelet/kuberuntime."
	for _, c := range []struct {
		fn   interface{}
		want string
	}{
		{(*kubeGenericRuntimeManager).SyncPod, pkg + "(*kubeGenericRuntimeManager).SyncPod"},
		{(*kubeGenericRuntimeManager).createPodSandbox, pkg + "(*kubeGenericRuntimeManager).createPodSandbox"},
		{(*kubeGenericRuntimeManager).startContainer, pkg + "(*kubeGenericRuntimeManager).startContainer"},
	} {
		if got := runtime.FuncForPC(reflect.ValueOf(c.fn).Pointer()).Name(); got != c.want {
			t.Errorf("symbol %q, want %q", got, c.want)
		}
	}
	var s startSpec
	if unsafe.Offsetof(s.container) != 0 {
		t.Errorf("startSpec.container at %d, want 0", unsafe.Offsetof(s.container))
	}
}

func TestSyncPod(t *testing.T) {
	m := NewKubeGenericRuntimeManager(NewLatencyRuntimeService(0), t.TempDir(), nil)
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}}
	pod.Spec.Containers = []v1.Container{{Name: "a"}, {Name: "b"}}
	res := m.SyncPod(context.Background(), pod, &kubecontainer.PodStatus{ID: pod.UID}, nil, nil)
	if err := res.Error(); err != nil {
		t.Fatal(err)
	}
	// CreatePodSandbox, ConfigPodSandbox, 2 x StartContainer.
	if len(res.SyncResults) != 4 {
		t.Errorf("%d sync results, want 4", len(res.SyncResults))
	}
}
