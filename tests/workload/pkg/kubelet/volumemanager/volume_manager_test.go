package volumemanager

import (
	"context"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/pkg/kubelet/config"
)

func funcName(fn interface{}) string {
	return runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
}

// The symbols podtrace resolves in a real kubelet must come out identical
// here (module path k8s.io/kubernetes, same package path, same receiver,
// closure numbered func1).
func TestProbedSymbolNames(t *testing.T) {
	vm := &volumeManager{}
	const pkg = "k8s.io/kubernetes/pkg/kubelet/volumemanager."
	for _, c := range []struct {
		fn   interface{}
		want string
	}{
		{(*volumeManager).WaitForAttachAndMount, pkg + "(*volumeManager).WaitForAttachAndMount"},
		{(*volumeManager).verifyVolumesMountedFunc, pkg + "(*volumeManager).verifyVolumesMountedFunc"},
		{(*volumeManager).getUnmountedVolumes, pkg + "(*volumeManager).getUnmountedVolumes"},
		{vm.verifyVolumesMountedFunc("uid", nil), pkg + "(*volumeManager).verifyVolumesMountedFunc.func1"},
	} {
		if got := funcName(c.fn); got != c.want {
			t.Errorf("symbol %q, want %q", got, c.want)
		}
	}
}

type fakePodManager struct {
	mu   sync.Mutex
	pods []*v1.Pod
}

func (f *fakePodManager) GetPods() []*v1.Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*v1.Pod(nil), f.pods...)
}

func (f *fakePodManager) GetPodByUID(uid k8stypes.UID) (*v1.Pod, bool) {
	for _, p := range f.GetPods() {
		if p.UID == uid {
			return p, true
		}
	}
	return nil, false
}

type neverTerminating struct{}

func (neverTerminating) ShouldPodContainersBeTerminating(k8stypes.UID) bool { return false }
func (neverTerminating) ShouldPodRuntimeBeRemoved(k8stypes.UID) bool        { return false }

func testPod(uid string, vols ...string) *v1.Pod {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-" + uid, Namespace: "ns", UID: k8stypes.UID(uid)}}
	c := v1.Container{Name: "app"}
	for _, name := range vols {
		pod.Spec.Volumes = append(pod.Spec.Volumes, v1.Volume{Name: name, VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
		c.VolumeMounts = append(c.VolumeMounts, v1.VolumeMount{Name: name, MountPath: "/" + name})
	}
	pod.Spec.Containers = []v1.Container{c}
	return pod
}

// WaitForAttachAndMount polls immediately, then on a fixed ticker, until
// the reconciler (fed by the populator) has mounted every volume.
func TestWaitForAttachAndMount(t *testing.T) {
	SetIntervals(Intervals{
		PodAttachAndMountRetryInterval: 30 * time.Millisecond,
		PodAttachAndMountTimeout:       5 * time.Second,
		ReconcilerLoopSleepPeriod:      10 * time.Millisecond,
		PopulatorLoopSleepPeriod:       10 * time.Millisecond,
	})
	pm := &fakePodManager{}
	gt := groundtruth.NewRecorder()
	vm := NewVolumeManager(pm, neverTerminating{}, t.TempDir(), gt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { vm.Run(ctx, config.NewSourcesReady()); close(done) }()
	defer func() { cancel(); <-done }()

	pod := testPod("11111111-2222-4333-8444-555555555555", "a", "b")
	pm.mu.Lock()
	pm.pods = append(pm.pods, pod)
	pm.mu.Unlock()

	start := time.Now()
	if err := vm.WaitForAttachAndMount(WithPodRef(ctx, pod), pod); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if elapsed < 25*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("WaitForAttachAndMount took %v, want about one or two 30ms ticks", elapsed)
	}
	checks := 0
	last := -1
	for _, r := range gt.Records() {
		if r.Stage == "poll_check" && r.PodUID == string(pod.UID) {
			checks++
			last = r.Extra[0].V.(int)
			if r.PodName != pod.Name || r.Namespace != pod.Namespace {
				t.Errorf("poll_check record has pod %s/%s", r.Namespace, r.PodName)
			}
		}
	}
	if checks < 2 || last != 0 {
		t.Errorf("poll checks %d (last unmounted %d): want >= 2, the last one with nothing unmounted", checks, last)
	}
	if n := gt.PollChecks(string(pod.UID)); n != checks {
		t.Errorf("PollChecks = %d, want %d", n, checks)
	}
	if got := vm.(*volumeManager).getUnmountedVolumes("11111111-2222-4333-8444-555555555555", []string{"a", "b", "c"}); len(got) != 1 || got[0] != "c" {
		t.Errorf("getUnmountedVolumes = %q, want [c]", got)
	}
}
