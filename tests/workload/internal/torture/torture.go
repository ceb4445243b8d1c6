// Package torture is the workload's --torture phase: it calls the functions
// podtrace probes on thousands of fresh goroutines so that
//
//   - (a) the probed function's own prologue finds the stack too small and
//     calls runtime.morestack, which copies the stack and re-runs the
//     function from its first instruction: an entry uprobe fires twice, on
//     the same goroutine, with different SPs;
//   - (b) the stack grows and moves while a probed function is running (it
//     calls something deeply recursive before it returns), so the SP at its
//     RET differs from the SP at its entry;
//   - (c) a probed function panics and the panic is recovered further up: its
//     RET never runs.
//
// It records exact call counts per probed function, how many of those calls
// never returned, and the number of panics, so that a tracer's entry
// de-duplication and entry/return pairing can be checked. How often (a) and
// (b) happened is measured from inside the program (see KindStats).
package torture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unsafe"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/pkg/kubelet"
	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager/cache"
	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/util/operationexecutor"
	volumetypes "k8s.io/kubernetes/pkg/volume/util/types"
)

// Symbols of the probed functions, as they appear in the binary's pclntab.
// Each package's tests check these names against runtime.FuncForPC.
const (
	FnKubeletSyncPod           = "k8s.io/kubernetes/pkg/kubelet.(*Kubelet).SyncPod"
	FnWaitForAttachAndMount    = "k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).WaitForAttachAndMount"
	FnPollUntilContextTimeout  = "k8s.io/apimachinery/pkg/util/wait.PollUntilContextTimeout"
	FnVerifyVolumesMountedFunc = "k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).verifyVolumesMountedFunc"
	FnVerifyFunc1              = "k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).verifyVolumesMountedFunc.func1"
	FnGetUnmountedVolumes      = "k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).getUnmountedVolumes"
	FnMarkVolumeAsMounted      = "k8s.io/kubernetes/pkg/kubelet/volumemanager/cache.(*actualStateOfWorld).MarkVolumeAsMounted"
	FnRuntimeSyncPod           = "k8s.io/kubernetes/pkg/kubelet/kuberuntime.(*kubeGenericRuntimeManager).SyncPod"
	FnCreatePodSandbox         = "k8s.io/kubernetes/pkg/kubelet/kuberuntime.(*kubeGenericRuntimeManager).createPodSandbox"
	FnStartContainer           = "k8s.io/kubernetes/pkg/kubelet/kuberuntime.(*kubeGenericRuntimeManager).startContainer"
)

// Options configures a torture run.
type Options struct {
	Goroutines int
	// ScratchDir receives the pod directories of the SyncPod scenarios
	// (a tmpfs such as /dev/shm keeps the run fast).
	ScratchDir string
	Namespace  string
}

// kind is one torture scenario.
type kind struct {
	name string
	// sweep: the probed call is made at the bottom of a burn() whose depth
	// sweeps the last ~3 KiB above the stack guard (case a).
	sweep bool
	// firstCallee: the probed function's first call of any kind is into a
	// fake cache (see KindStats.MovedBeforeFirstCallee).
	firstCallee bool
	// calls made per goroutine, per function, and those that never return.
	calls      map[string]int64
	unreturned map[string]int64
	// setup adjusts the plan (recursion depths inside the fakes) for the
	// j-th goroutine of this kind.
	setup func(p *plan, j int)
	// run makes the probed call; it must call mark(&t.spBefore) right
	// before and mark(&t.spAfter) right after it.
	run func(e *env, t *task)
}

// task is one goroutine's scenario.
type task struct {
	kind   *kind
	pre    int // deep(pre) first: grows a fresh stack once
	levels int
	fine   uint
	pod    *v1.Pod
	name   volumetypes.UniquePodName
	plan   *plan
	cond   wait.ConditionWithContextFunc // func1 scenarios: made before the burn
	status *kubecontainer.PodStatus
	opts   *operationexecutor.MarkVolumeOpts

	burnMoved bool    // the stack moved during the burn
	bsp       uintptr // sp() in the bottom frame, before calling run
	spBefore  uintptr // mark() in run, right before the probed call
	spAfter   uintptr // mark() in run, right after it (0: it panicked)
	panicked  bool
}

// Distances that are fixed as long as the stack does not move; measured per
// kind on a goroutine whose stack was grown beforehand.
type refDist struct {
	run   uintptr // bsp - spBefore: the run closure's frame
	first uintptr // spBefore - first fake callee's SP
	last  uintptr // spBefore - aswSP2 (the point where the panic kinds panic)
}

func (t *task) dist() refDist {
	first := t.plan.aswSP
	if t.plan.popSP != 0 {
		first = t.plan.popSP
	}
	d := refDist{run: t.bsp - t.spBefore}
	if first != 0 {
		d.first = t.spBefore - first
	}
	if t.plan.aswSP2 != 0 {
		d.last = t.spBefore - t.plan.aswSP2
	}
	return d
}

// mark stores an address in the calling frame's callee area; two calls from
// the same frame store the same value unless the stack moved in between.
// nosplit: it must not itself be where the stack grows.
//
//go:nosplit
func mark(p *uintptr) {
	*p = sp()
}

type env struct {
	ctx     context.Context
	plans   sync.Map
	asw     *tortureASW
	dsw     *tortureDSW
	handle  *volumemanager.TortureHandle
	kl      *kubelet.Kubelet
	realASW cache.ActualStateOfWorld
}

func counts(kv ...interface{}) map[string]int64 {
	m := map[string]int64{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = int64(kv[i+1].(int))
	}
	return m
}

func runGetUnmounted(e *env, t *task) {
	mark(&t.spBefore)
	_ = e.handle.GetUnmountedVolumes(t.name, t.plan.expected) // inlined hook: a direct call
	mark(&t.spAfter)
}

func runFunc1(e *env, t *task) {
	// The closure was made before the burn (see runTask).
	mark(&t.spBefore)
	_, _ = t.cond(e.ctx)
	mark(&t.spAfter)
}

// The arguments of the SyncPod and MarkVolumeAsMounted calls are built
// before the burn (in newTask): building them allocates, and an allocation
// right before the call would be where the stack grows, never the probed
// function's prologue.

// runSyncPod: sync_v135.go / sync_v136.go (SyncPod's result shapes).

func runMarkVolumeAsMounted(e *env, t *task) {
	mark(&t.spBefore)
	_ = e.realASW.MarkVolumeAsMounted(*t.opts)
	mark(&t.spAfter)
}

var syncPodCalls = counts(
	FnKubeletSyncPod, 1, FnWaitForAttachAndMount, 1, FnPollUntilContextTimeout, 1,
	FnVerifyVolumesMountedFunc, 1, FnVerifyFunc1, 1, FnGetUnmountedVolumes, 1,
	FnRuntimeSyncPod, 1, FnCreatePodSandbox, 1, FnStartContainer, 1)

var kinds = []*kind{
	{
		name: "getUnmountedVolumes_entry", sweep: true, firstCallee: true,
		calls: counts(FnGetUnmountedVolumes, 1),
		run:   runGetUnmounted,
	},
	{
		name: "verifyVolumesMountedFunc.func1_entry", sweep: true, firstCallee: true,
		calls: counts(FnVerifyVolumesMountedFunc, 1, FnVerifyFunc1, 1, FnGetUnmountedVolumes, 1),
		run:   runFunc1,
	},
	{
		name: "SyncPod_entry_and_growth_inside", sweep: true,
		calls: syncPodCalls,
		setup: func(p *plan, j int) { p.aswDepth = 8 + j%24 }, // 8..31 KiB below getUnmountedVolumes
		run:   runSyncPod,
	},
	{
		name: "MarkVolumeAsMounted_entry", sweep: true,
		calls: counts(FnMarkVolumeAsMounted, 1),
		run:   runMarkVolumeAsMounted,
	},
	{
		name:  "getUnmountedVolumes_growth_inside",
		calls: counts(FnGetUnmountedVolumes, 1),
		setup: func(p *plan, j int) { p.aswDepth = 4 + j%60 },
		run:   runGetUnmounted,
	},
	{
		name:  "verifyVolumesMountedFunc.func1_growth_inside",
		calls: counts(FnVerifyVolumesMountedFunc, 1, FnVerifyFunc1, 1, FnGetUnmountedVolumes, 1),
		setup: func(p *plan, j int) { p.popDepth = 4 + j%30; p.aswDepth = 4 + (j/2)%30 },
		run:   runFunc1,
	},
	{
		name:       "getUnmountedVolumes_panic",
		calls:      counts(FnGetUnmountedVolumes, 1),
		unreturned: counts(FnGetUnmountedVolumes, 1),
		setup:      func(p *plan, j int) { p.aswDepth = j % 40; p.aswPanic = true },
		run:        runGetUnmounted,
	},
	{
		name: "SyncPod_panic",
		calls: counts(FnKubeletSyncPod, 1, FnWaitForAttachAndMount, 1, FnPollUntilContextTimeout, 1,
			FnVerifyVolumesMountedFunc, 1, FnVerifyFunc1, 1, FnGetUnmountedVolumes, 1),
		unreturned: counts(FnKubeletSyncPod, 1, FnWaitForAttachAndMount, 1, FnPollUntilContextTimeout, 1,
			FnVerifyFunc1, 1, FnGetUnmountedVolumes, 1),
		setup: func(p *plan, j int) { p.aswDepth = j % 40; p.aswPanic = true },
		run:   runSyncPod,
	},
}

// KindStats summarises one scenario. Every goroutine of a kind makes one
// probed call (which may make further probed calls, see Result.Calls).
type KindStats struct {
	Goroutines int `json:"goroutines"`
	// The stack grew before the probed call (in the burn that positions
	// it): that call then ran on a big stack.
	MovedBeforeCall int `json:"stack_moved_before_call"`
	// The stack moved between the probed function's entry and its return
	// (or, for the panic kinds, the panic): cases (a) and (b).
	MovedDuringCall int `json:"stack_moved_during_call"`
	// The stack had already moved when the probed function made its first
	// call into a fake cache (nosplit, so its own prologue cannot grow the
	// stack). For verifyVolumesMountedFunc.func1 that is its first call of
	// any kind, so this counts exactly the calls whose own prologue called
	// morestack (case a: double entry). For getUnmountedVolumes it also
	// counts growth inside sets.New, which runs first.
	MovedBeforeFirstCallee int `json:"stack_moved_before_first_callee"`
	Panics                 int `json:"panics"`
}

// Result is the outcome of a torture run.
type Result struct {
	Goroutines int                   `json:"goroutines"`
	Calls      map[string]int64      `json:"calls"`
	Unreturned map[string]int64      `json:"unreturned"`
	Panics     int64                 `json:"panics"`
	Kinds      map[string]*KindStats `json:"kinds"`
	GrowLevels int                   `json:"calibrated_grow_levels"`
	// ReferenceGoroutines ran each kind once more, on a pre-grown stack, to
	// calibrate the distances; their calls and panics are included in
	// Calls, Unreturned and Panics.
	ReferenceGoroutines int           `json:"reference_goroutines"`
	StartMono           int64         `json:"start_mono_ns"`
	EndMono             int64         `json:"end_mono_ns"`
	Elapsed             time.Duration `json:"-"`
}

// Record returns the ground-truth "torture" record.
func (r *Result) Record() groundtruth.Record {
	return groundtruth.Record{Stage: "torture", Extra: []groundtruth.KV{
		{K: "goroutines", V: r.Goroutines},
		{K: "reference_goroutines", V: r.ReferenceGoroutines},
		{K: "calls", V: r.Calls},
		{K: "unreturned", V: r.Unreturned},
		{K: "panics", V: r.Panics},
		{K: "kinds", V: r.Kinds},
		{K: "calibrated_grow_levels", V: r.GrowLevels},
		{K: "start_mono_ns", V: r.StartMono},
		{K: "end_mono_ns", V: r.EndMono},
	}}
}

// Summary is a one-line description.
func (r *Result) Summary() string {
	moved := 0
	for _, k := range r.Kinds {
		moved += k.MovedDuringCall
	}
	return fmt.Sprintf("%d goroutines in %v, %d probed calls, %d panics, stack moved during %d calls",
		r.Goroutines, r.Elapsed.Round(time.Millisecond), sum(r.Calls), r.Panics, moved)
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func (e *env) newTask(k *kind, i, j int, ns string) *task {
	t := &task{kind: k, pod: newPod(i, ns)}
	t.name = volumetypes.UniquePodName(t.pod.UID)
	t.plan = &plan{expected: []string{t.pod.Spec.Volumes[0].Name, t.pod.Spec.Volumes[1].Name}}
	if k.setup != nil && j >= 0 {
		k.setup(t.plan, j)
	} else if k.setup != nil {
		// reference: no recursion, but panic where the kind panics
		k.setup(t.plan, 0)
		t.plan.aswDepth, t.plan.popDepth = 0, 0
	}
	e.plans.Store(t.name, t.plan)
	t.status = &kubecontainer.PodStatus{ID: t.pod.UID}
	t.opts = &operationexecutor.MarkVolumeOpts{
		PodName:             t.name,
		PodUID:              t.pod.UID,
		VolumeName:          "kubernetes.io/empty-dir/" + v1.UniqueVolumeName(t.pod.UID) + "-scratch-1",
		OuterVolumeSpecName: "scratch-1",
		VolumeSpec:          volume.NewSpecFromVolume(&t.pod.Spec.Volumes[1]),
		VolumeMountState:    operationexecutor.VolumeMounted,
	}
	return t
}

// Run runs the torture phase.
func Run(ctx context.Context, o Options) (*Result, error) {
	res := &Result{
		Goroutines: o.Goroutines,
		Calls:      map[string]int64{},
		Unreturned: map[string]int64{},
		Kinds:      map[string]*KindStats{},
	}
	if o.Goroutines <= 0 {
		return res, nil
	}
	root, err := os.MkdirTemp(o.ScratchDir, "podtrace-torture-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)

	// New goroutines start with a 2 KiB stack, or bigger: since Go 1.19 the
	// starting size is the average stack size seen at the last GC. Reset it
	// with a GC while only the small kubelet goroutines exist, then keep GC
	// off so that it stays put.
	runtime.GC()
	oldGC := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(oldGC)
	utilruntime.Quiet = true
	defer func() { utilruntime.Quiet = false }()

	e := &env{ctx: ctx, realASW: cache.NewActualStateOfWorld()}
	e.asw = &tortureASW{plans: &e.plans}
	e.dsw = &tortureDSW{plans: &e.plans}
	e.handle = volumemanager.NewTortureHandle(e.asw, e.dsw)
	e.kl = kubelet.NewTortureKubelet(root, e.handle.VolumeManager())

	res.GrowLevels = calibrate(sweepPre)
	for _, k := range kinds {
		res.Kinds[k.name] = &KindStats{}
	}

	// Reference distances, one goroutine per kind on a pre-grown stack.
	ref := map[*kind]refDist{}
	var refTasks []*task
	for i, k := range kinds {
		t := e.newTask(k, -1-i, -1, o.Namespace)
		done := make(chan bool)
		go func() {
			deep(16) // grow this goroutine's stack to 32 KiB first
			done <- runTask(e, t)
		}()
		if moved := <-done; moved {
			return nil, fmt.Errorf("calibrating %s: the stack moved", k.name)
		}
		ref[k] = t.dist()
		refTasks = append(refTasks, t)
	}
	res.ReferenceGoroutines = len(refTasks)

	tasks := make([]*task, o.Goroutines)
	for i := range tasks {
		k := kinds[i%len(kinds)]
		j := i / len(kinds)
		t := e.newTask(k, i, j, o.Namespace)
		if k.sweep {
			// The goroutine first grows its stack once with
			// deep(sweepPre); then coarse: the last three 1 KiB levels
			// before the stack must grow again, fine: 64 steps of the
			// 16..512-byte pads. Together they sweep the SP at the probed
			// call over the last ~3 KiB above the stack guard, so that
			// for some calls nothing grows, for some the probed function's
			// own prologue finds the stack too small, and for others
			// something it calls does.
			t.pre = sweepPre
			t.levels = res.GrowLevels - 3 + j%3
			if t.levels < 0 {
				t.levels = 0
			}
			t.fine = uint(j/3) % 64
		} else {
			t.levels = j % 3
		}
		tasks[i] = t
	}

	res.StartMono = groundtruth.MonoNow()
	start := time.Now()
	sem := make(chan struct{}, 4*runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for _, t := range tasks {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(t *task) {
			defer wg.Done()
			defer func() { <-sem }()
			runTask(e, t)
		}(t)
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.EndMono = groundtruth.MonoNow()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Tally, and cross-check the static call counts against what the fake
	// caches saw.
	var wantASW, wantPop int64
	for _, t := range append(refTasks, tasks...) {
		for fn, n := range t.kind.calls {
			res.Calls[fn] += n
		}
		for fn, n := range t.kind.unreturned {
			res.Unreturned[fn] += n
		}
		if t.panicked {
			res.Panics++
		}
		if (t.kind.unreturned != nil) != t.panicked {
			return nil, fmt.Errorf("scenario %s: panicked=%v, unexpected", t.kind.name, t.panicked)
		}
		wantASW += t.kind.calls[FnGetUnmountedVolumes]
		wantPop += t.kind.calls[FnVerifyFunc1]
	}
	for _, t := range tasks {
		ks := res.Kinds[t.kind.name]
		ks.Goroutines++
		if t.panicked {
			ks.Panics++
		}
		r, d := ref[t.kind], t.dist()
		before := t.burnMoved || d.run != r.run
		// spBefore, spAfter and the fakes' SPs are all taken after any
		// growth "before" the call, so this is independent of it.
		during := t.spBefore != t.spAfter
		if t.panicked {
			during = d.last != r.last
		}
		if before {
			ks.MovedBeforeCall++
		}
		if during {
			ks.MovedDuringCall++
		}
		if t.kind.firstCallee && d.first != r.first {
			ks.MovedBeforeFirstCallee++
		}
	}
	if e.asw.calls != wantASW {
		return nil, fmt.Errorf("getUnmountedVolumes: fake cache saw %d calls, expected %d", e.asw.calls, wantASW)
	}
	if e.dsw.calls != wantPop {
		return nil, fmt.Errorf("verifyVolumesMountedFunc.func1: fake cache saw %d calls, expected %d", e.dsw.calls, wantPop)
	}
	return res, nil
}

// runTask is the body of one goroutine; it reports whether the stack moved
// at all (after the initial deep(t.pre)).
func runTask(e *env, t *task) (moved bool) {
	var anchor [1]uintptr
	ap := &anchor // a pointer into this frame: adjusted if the stack moves
	if t.pre > 0 {
		deep(t.pre)
	}
	anchor0 := uintptr(unsafe.Pointer(ap))
	defer func() {
		moved = uintptr(unsafe.Pointer(ap)) != anchor0
		if r := recover(); r != nil {
			if _, ok := r.(tortureePanic); !ok {
				panic(r)
			}
			t.panicked = true
		}
	}()
	if strings.HasPrefix(t.kind.name, "verifyVolumesMountedFunc.func1") {
		t.cond = e.handle.VerifyVolumesMountedFunc(t.name, t.plan.expected)
	}
	burn(t.levels, t.fine, func() {
		t.burnMoved = uintptr(unsafe.Pointer(ap)) != anchor0
		t.bsp = sp()
		// If the probed call panics, the deferred recover above records it.
		t.kind.run(e, t)
	})
	return false // set by the deferred function
}

// sweepPre is the deep() depth a sweep goroutine starts with: 1 KiB, enough
// to take a fresh 2 KiB stack to 4 KiB.
const sweepPre = 1

// calibrate returns the smallest number of 1 KiB burn levels after which the
// stack of a fresh goroutine that first ran deep(pre) has had to grow again.
func calibrate(pre int) int {
	for n := 0; n < 64; n++ {
		moved := make(chan bool)
		go func() {
			deep(pre)
			before := sp()
			burn(n, 0, func() {})
			moved <- sp() != before
		}()
		if <-moved {
			return n
		}
	}
	return 64
}

func newPod(i int, namespace string) *v1.Pod {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	uid := types.UID(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
	vols := []v1.Volume{
		{Name: "kube-api-access-trtr", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{}}},
		{Name: "scratch-1", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
	}
	name := fmt.Sprintf("torture-%05d", i)
	if i < 0 {
		name = fmt.Sprintf("torture-ref-%d", -i)
	}
	return &v1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: namespace,
			UID:       uid,
		},
		Spec: v1.PodSpec{
			Volumes: vols,
			Containers: []v1.Container{{
				Name:  "app",
				Image: "registry.k8s.io/pause:3.10",
				VolumeMounts: []v1.VolumeMount{
					{Name: vols[0].Name, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
					{Name: vols[1].Name, MountPath: "/scratch-1"},
				},
			}},
		},
	}
}
