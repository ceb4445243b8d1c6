// Package app holds the workload's command line handling and the run loop
// that feeds synthetic pods to the kubelet.
package app

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/kubernetes/internal/groundtruth"
	"k8s.io/kubernetes/internal/torture"
	"k8s.io/kubernetes/pkg/kubelet"
	"k8s.io/kubernetes/pkg/kubelet/kuberuntime"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
	"k8s.io/kubernetes/pkg/kubelet/volumemanager"
)

// preset holds the four loop periods the seed notes tune.
type preset struct {
	poll, reconciler, populator, pleg time.Duration
}

var presets = map[string]preset{
	// kubelet's constants.
	"default": {poll: 300 * time.Millisecond, reconciler: 100 * time.Millisecond, populator: 100 * time.Millisecond, pleg: time.Second},
	// The "tuned" kubelet of the seed notes.
	"tuned": {poll: 30 * time.Millisecond, reconciler: 10 * time.Millisecond, populator: 10 * time.Millisecond, pleg: 100 * time.Millisecond},
}

type options struct {
	preset           string
	pollInterval     time.Duration
	pollTimeout      time.Duration
	reconcilerPeriod time.Duration
	populatorPeriod  time.Duration
	plegPeriod       time.Duration
	pods             int
	rate             float64
	volumes          int
	containers       int
	root             string
	groundTruth      string
	namespace        string
	startDelay       time.Duration
	linger           time.Duration
	criLatency       time.Duration
	prepLatency      time.Duration
	torture          bool
	tortureN         int
	verbose          bool
	jitter           bool
	criClient        string
	criSocket        string
	image            string
	criGroundTruth   string
	stopPods         bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("kubelet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.preset, "preset", "default", "loop periods: default (poll 300ms, reconciler 100ms, populator 100ms, PLEG 1s) or tuned (30ms/10ms/10ms/100ms)")
	fs.DurationVar(&o.pollInterval, "poll-interval", 0, "override podAttachAndMountRetryInterval (WaitForAttachAndMount poll)")
	fs.DurationVar(&o.pollTimeout, "poll-timeout", 2*time.Minute+3*time.Second, "podAttachAndMountTimeout")
	fs.DurationVar(&o.reconcilerPeriod, "reconciler-period", 0, "override reconcilerLoopSleepPeriod")
	fs.DurationVar(&o.populatorPeriod, "populator-period", 0, "override desiredStateOfWorldPopulatorLoopSleepPeriod")
	fs.DurationVar(&o.plegPeriod, "pleg-period", 0, "override the PLEG relist period")
	fs.IntVar(&o.pods, "pods", 5, "number of pods to start")
	fs.Float64Var(&o.rate, "rate", 2, "pods per second")
	fs.IntVar(&o.volumes, "volumes", 2, "volumes per pod (first: projected kube-api-access-xxxxx, others: emptyDir)")
	fs.IntVar(&o.containers, "containers", 1, "containers per pod")
	fs.StringVar(&o.root, "root", "", "kubelet root directory (default: a temporary directory, removed at exit)")
	fs.StringVar(&o.groundTruth, "ground-truth", "", "write the ground-truth JSONL file here")
	fs.StringVar(&o.namespace, "namespace", "default", "pod namespace")
	fs.DurationVar(&o.startDelay, "start-delay", 0, "sleep this long before the first pod (lets a tracer attach)")
	fs.DurationVar(&o.linger, "linger", 300*time.Millisecond, "keep the loops running this long after the last pod synced")
	fs.DurationVar(&o.criLatency, "cri-latency", 5*time.Millisecond, "duration of each fake CRI call (RunPodSandbox, CreateContainer, StartContainer)")
	fs.DurationVar(&o.prepLatency, "prep-latency", 3*time.Millisecond, "sleep in SyncPod before makePodDataDirs (stands for mirror-pod/cgroup work)")
	fs.BoolVar(&o.torture, "torture", false, "after the pods, run the stack-growth/panic torture phase")
	fs.IntVar(&o.tortureN, "torture-goroutines", 2000, "goroutines in the torture phase")
	fs.BoolVar(&o.verbose, "verbose", false, "also print a line per pod on stderr (default: only the summary)")
	fs.BoolVar(&o.jitter, "arrival-jitter", true, "pod i arrives at a random point of [i/rate, (i+1)/rate) instead of exactly at i/rate")
	fs.StringVar(&o.criClient, "cri-client", "", "make the CRI calls on a real containerd through this cri-client binary (tests/cri-client) instead of sleeping; needs --cri-socket and --image")
	fs.StringVar(&o.criSocket, "cri-socket", "", "with --cri-client: containerd's CRI socket")
	fs.StringVar(&o.image, "image", "", "with --cri-client: image of every container (full reference)")
	fs.StringVar(&o.criGroundTruth, "cri-ground-truth", "", "with --cri-client: cri-client's per-CRI-call JSONL ground truth (emptied at start, appended to by each cri-client run)")
	fs.BoolVar(&o.stopPods, "stop-pods", true, "with --cri-client: stop and remove the pods started at exit (false: leave them running)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	p, ok := presets[o.preset]
	if !ok {
		return nil, fmt.Errorf("--preset must be default or tuned, not %q", o.preset)
	}
	if o.pollInterval == 0 {
		o.pollInterval = p.poll
	}
	if o.reconcilerPeriod == 0 {
		o.reconcilerPeriod = p.reconciler
	}
	if o.populatorPeriod == 0 {
		o.populatorPeriod = p.populator
	}
	if o.plegPeriod == 0 {
		o.plegPeriod = p.pleg
	}
	switch {
	case o.pollInterval < 0 || o.reconcilerPeriod < 0 || o.populatorPeriod < 0 || o.plegPeriod < 0:
		return nil, errors.New("periods must be positive")
	case o.pollTimeout <= 0:
		return nil, errors.New("--poll-timeout must be positive")
	case o.pods < 0:
		return nil, errors.New("--pods must be >= 0")
	case o.pods > 0 && o.rate <= 0:
		return nil, errors.New("--rate must be > 0")
	case o.volumes < 0:
		return nil, errors.New("--volumes must be >= 0")
	case o.containers < 1:
		return nil, errors.New("--containers must be >= 1")
	case o.tortureN < 0:
		return nil, errors.New("--torture-goroutines must be >= 0")
	case o.namespace == "":
		return nil, errors.New("--namespace must not be empty")
	case o.criClient == "" && (o.criSocket != "" || o.image != "" || o.criGroundTruth != ""):
		return nil, errors.New("--cri-socket, --image and --cri-ground-truth need --cri-client")
	case o.criClient != "" && (o.criSocket == "" || o.image == ""):
		return nil, errors.New("--cri-client needs --cri-socket and --image")
	}
	return o, nil
}

// Run runs the workload and returns the process exit code.
func Run(args []string) int {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "kubelet (podtrace workload): %v\n", err)
		return 2
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet (podtrace workload): error: %v\n", err)
		return 1
	}
	return 0
}

func run(o *options) (retErr error) {
	gt := groundtruth.NewRecorder()

	root := o.root
	if root == "" {
		dir, err := os.MkdirTemp("", "podtrace-kubelet-")
		if err != nil {
			return fmt.Errorf("creating temporary root: %w", err)
		}
		root = dir
		defer os.RemoveAll(dir)
	}

	var cri *kuberuntime.CRIClient
	if o.criClient != "" {
		if o.criGroundTruth != "" {
			// cri-client appends: start from an empty file.
			if err := os.WriteFile(o.criGroundTruth, nil, 0o644); err != nil {
				return fmt.Errorf("creating CRI ground truth: %w", err)
			}
		}
		cri = kuberuntime.NewCRIClient(kuberuntime.CRIClientOptions{
			Binary:      o.criClient,
			Socket:      o.criSocket,
			GroundTruth: o.criGroundTruth,
		})
	}

	exe, _ := os.Executable()
	config := []groundtruth.KV{
		{K: "preset", V: o.preset},
		{K: "poll_interval_ns", V: int64(o.pollInterval)},
		{K: "poll_timeout_ns", V: int64(o.pollTimeout)},
		{K: "reconciler_period_ns", V: int64(o.reconcilerPeriod)},
		{K: "populator_period_ns", V: int64(o.populatorPeriod)},
		{K: "pleg_period_ns", V: int64(o.plegPeriod)},
		{K: "pods", V: o.pods},
		{K: "rate", V: o.rate},
		{K: "arrival_jitter", V: o.jitter},
		{K: "volumes", V: o.volumes},
		{K: "containers", V: o.containers},
		{K: "cri_latency_ns", V: int64(o.criLatency)},
		{K: "prep_latency_ns", V: int64(o.prepLatency)},
		{K: "namespace", V: o.namespace},
		{K: "root", V: root},
		{K: "torture", V: o.torture},
		{K: "kubelet_shape", V: kubelet.KubeletShape},
		{K: "go_version", V: runtime.Version()},
		{K: "goarch", V: runtime.GOARCH},
		{K: "buildmode", V: buildMode()},
		{K: "pid", V: os.Getpid()},
		{K: "exe", V: exe},
		{K: "mono_ns", V: groundtruth.MonoNow()},
		{K: "unix_minus_mono_ns", V: gt.UnixOffset()},
	}
	if cri != nil {
		config = append(config,
			groundtruth.KV{K: "cri_client", V: o.criClient},
			groundtruth.KV{K: "cri_socket", V: o.criSocket},
			groundtruth.KV{K: "image", V: o.image},
			groundtruth.KV{K: "cri_ground_truth", V: o.criGroundTruth})
	}
	gt.Add(groundtruth.Record{Stage: "config", Extra: config})

	// Write whatever we have on every exit path.
	defer func() {
		if o.groundTruth == "" {
			return
		}
		if err := gt.WriteFile(o.groundTruth); err != nil && retErr == nil {
			retErr = fmt.Errorf("writing ground truth: %w", err)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigCh := make(chan os.Signal, 1)
	signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigCh)
	var interrupted error
	var intMu sync.Mutex
	go func() {
		select {
		case s := <-sigCh:
			intMu.Lock()
			interrupted = fmt.Errorf("interrupted by %v", s)
			intMu.Unlock()
			cancel()
		case <-ctx.Done():
		}
	}()

	// Pod completion tracking.
	type result struct {
		pod *v1.Pod
		err error
		at  time.Time
	}
	done := make(chan result, o.pods+1)
	kl, err := kubelet.NewMainKubelet(kubelet.Options{
		RootDirectory:    root,
		PLEGRelistPeriod: o.plegPeriod,
		VolumeIntervals: volumemanager.Intervals{
			PodAttachAndMountRetryInterval: o.pollInterval,
			PodAttachAndMountTimeout:       o.pollTimeout,
			ReconcilerLoopSleepPeriod:      o.reconcilerPeriod,
			PopulatorLoopSleepPeriod:       o.populatorPeriod,
		},
		PodPrepareLatency: o.prepLatency,
		CRILatency:        o.criLatency,
		CRIClient:         cri,
		GroundTruth:       gt,
		OnSyncDone: func(pod *v1.Pod, _ bool, err error) {
			done <- result{pod: pod, err: err, at: time.Now()}
		},
	})
	if err != nil {
		return err
	}

	// Stop the pods started on the real runtime on every exit path: every
	// return below comes after stopKubelet, and this runs before the deferred
	// removal of the root directory (which holds the pods' log directories).
	criSummary := ""
	if cri != nil {
		defer func() {
			if !o.stopPods {
				return
			}
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer scancel()
			n, err := cri.StopPods(sctx)
			if o.verbose {
				fmt.Fprintf(os.Stderr, "podtrace workload: stopped %d pods through cri-client\n", n)
			}
			if err != nil && retErr == nil {
				retErr = fmt.Errorf("stopping pods: %w", err)
			}
		}()
		criSummary = fmt.Sprintf("; CRI: containerd at %s via %s", o.criSocket, o.criClient)
		if o.stopPods {
			criSummary += " (pods stopped at exit)"
		}
	}

	updates := make(chan kubetypes.PodUpdate)
	kubeletDone := make(chan struct{})
	go func() {
		defer close(kubeletDone)
		kl.Run(ctx, updates)
	}()
	stopKubelet := func() {
		cancel()
		<-kubeletDone
	}

	began := time.Now()
	if o.verbose {
		fmt.Fprintf(os.Stderr, "podtrace workload: pid %d, root %s, first pod in %v\n", os.Getpid(), root, o.startDelay)
	}
	if o.startDelay > 0 {
		select {
		case <-time.After(o.startDelay):
		case <-ctx.Done():
		}
	}

	// Feed pods at the requested rate, from a separate goroutine so that the
	// main goroutine can collect results.
	pods := make([]*v1.Pod, 0, o.pods)
	for i := 0; i < o.pods; i++ {
		pods = append(pods, newPod(i, o))
	}
	// Pod i arrives at a uniformly random point of its slot [i/rate,
	// (i+1)/rate): the average rate is --rate, and arrivals are not
	// phase-locked to the loops (which start together with the kubelet and
	// tick at round multiples of the same clock), as in a real node.
	slot := float64(time.Second) / o.rate
	offsets := make([]time.Duration, len(pods))
	for i := range offsets {
		u := 0.0
		if o.jitter {
			u = randFloat()
		}
		offsets[i] = time.Duration((float64(i) + u) * slot)
	}
	firstPod := time.Now()
	go func() {
		for i, pod := range pods {
			at := firstPod.Add(offsets[i])
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			select {
			case updates <- kubetypes.PodUpdate{Op: kubetypes.ADD, Pods: []*v1.Pod{pod}, Source: "podtrace"}:
			case <-ctx.Done():
				return
			}
		}
	}()

	var failed []string
	synced := 0
	for synced < o.pods {
		select {
		case r := <-done:
			synced++
			if r.err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", r.pod.Name, r.err))
			}
			if o.verbose {
				status := "ok"
				if r.err != nil {
					status = "FAILED: " + r.err.Error()
				}
				fmt.Fprintf(os.Stderr, "pod %s/%s (%s) synced at +%v: %s\n", r.pod.Namespace, r.pod.Name, r.pod.UID,
					r.at.Sub(firstPod).Round(time.Millisecond), status)
			}
		case <-ctx.Done():
			stopKubelet()
			intMu.Lock()
			defer intMu.Unlock()
			if interrupted != nil {
				return fmt.Errorf("%v after %d of %d pods synced", interrupted, synced, o.pods)
			}
			return fmt.Errorf("stopped after %d of %d pods synced", synced, o.pods)
		}
	}
	lastSync := time.Now()

	var tortureErr error
	var tortureSummary string
	if o.torture {
		res, err := torture.Run(ctx, torture.Options{Goroutines: o.tortureN, ScratchDir: scratchDir(root), Namespace: o.namespace})
		if err != nil {
			tortureErr = fmt.Errorf("torture: %w", err)
		} else {
			gt.Add(res.Record())
			tortureSummary = res.Summary()
		}
	}

	// Linger: keep the loops ticking after the last pod.
	if o.linger > 0 {
		select {
		case <-time.After(o.linger):
		case <-ctx.Done():
		}
	}
	stopKubelet()

	intMu.Lock()
	intErr := interrupted
	intMu.Unlock()

	fmt.Fprintln(os.Stderr, summary(gt, o, len(pods), failed, lastSync.Sub(firstPod), time.Since(began), tortureSummary)+criSummary)
	switch {
	case intErr != nil:
		return intErr
	case len(failed) > 0:
		return fmt.Errorf("%d of %d pods failed to sync: %s", len(failed), o.pods, strings.Join(failed, "; "))
	case tortureErr != nil:
		return tortureErr
	}
	return nil
}

func summary(gt *groundtruth.Recorder, o *options, npods int, failed []string, podsWall, total time.Duration, tortureSummary string) string {
	var mw []time.Duration
	checks := 0
	for _, r := range gt.Records() {
		if r.Stage == "mount_wait" {
			mw = append(mw, time.Duration(r.EndMono-r.StartMono))
		}
		if r.Stage == "poll_check" {
			checks++
		}
	}
	sort.Slice(mw, func(i, j int) bool { return mw[i] < mw[j] })
	mwStr := "n/a"
	if len(mw) > 0 {
		mwStr = fmt.Sprintf("min %v median %v max %v", mw[0].Round(time.Millisecond/10),
			mw[len(mw)/2].Round(time.Millisecond/10), mw[len(mw)-1].Round(time.Millisecond/10))
	}
	s := fmt.Sprintf("podtrace workload: %d/%d pods synced in %v (%s, kubelet %s shape, preset %s: poll %v, reconciler %v, populator %v, pleg %v); mount_wait %s; %d poll checks",
		npods-len(failed), npods, podsWall.Round(time.Millisecond), runtime.Version(), kubelet.KubeletShape, o.preset,
		o.pollInterval, o.reconcilerPeriod, o.populatorPeriod, o.plegPeriod, mwStr, checks)
	if tortureSummary != "" {
		s += "; torture: " + tortureSummary
	}
	if o.groundTruth != "" {
		s += fmt.Sprintf("; ground truth: %s (%d records)", o.groundTruth, len(gt.Records()))
	}
	s += fmt.Sprintf("; total %v", total.Round(time.Millisecond))
	return s
}

// scratchDir prefers /dev/shm (tmpfs) for the torture phase's thousands of
// pod directories: on a disk they can take a millisecond each.
func scratchDir(root string) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", ".podtrace-probe-"); err == nil {
			name := f.Name()
			f.Close()
			os.Remove(name)
			return "/dev/shm"
		}
	}
	return root
}

func buildMode() string {
	if m := buildSetting("-buildmode"); m != "" {
		return m
	}
	return "exe"
}

func buildSetting(key string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// newUID returns a random RFC 4122 version 4 UUID.
func newUID() types.UID {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = (b[6] & 0x0f) | 0x40 // version 4
	b[8] = (b[8] & 0x3f) | 0x80 // variant 10
	return types.UID(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// randFloat returns a uniform float64 in [0, 1) from crypto/rand.
func randFloat() float64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
}

const alnum = "bcdfghjklmnpqrstvwxz2456789" // like k8s.io/apimachinery/pkg/util/rand

func randSuffix(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

// newPod builds pod i: volumes[0] is a projected kube-api-access-xxxxx
// volume (as the ServiceAccount admission plugin adds), the others emptyDirs;
// every container mounts every volume.
func newPod(i int, o *options) *v1.Pod {
	name := fmt.Sprintf("podtrace-demo-%03d", i)
	pod := &v1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			Namespace:         o.namespace,
			UID:               newUID(),
			ResourceVersion:   fmt.Sprint(1000 + i),
			Generation:        1,
			CreationTimestamp: metav1.Now(),
			Labels:            map[string]string{"app": "podtrace-demo"},
			Annotations:       map[string]string{"kubernetes.io/config.source": "api"},
		},
		Spec: v1.PodSpec{
			RestartPolicy:      v1.RestartPolicyAlways,
			DNSPolicy:          v1.DNSClusterFirst,
			ServiceAccountName: "default",
			NodeName:           "podtrace-node",
			SchedulerName:      v1.DefaultSchedulerName,
		},
		Status: v1.PodStatus{Phase: v1.PodPending, QOSClass: v1.PodQOSBestEffort},
	}
	var mounts []v1.VolumeMount
	for j := 0; j < o.volumes; j++ {
		var vol v1.Volume
		if j == 0 {
			expiry := int64(3607)
			vol = v1.Volume{Name: "kube-api-access-" + randSuffix(5), VolumeSource: v1.VolumeSource{
				Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
					{ServiceAccountToken: &v1.ServiceAccountTokenProjection{ExpirationSeconds: &expiry, Path: "token"}},
					{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"},
						Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
					{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: []v1.DownwardAPIVolumeFile{
						{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
				}},
			}}
			mounts = append(mounts, v1.VolumeMount{Name: vol.Name, ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"})
		} else {
			vol = v1.Volume{Name: fmt.Sprintf("scratch-%d", j), VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}
			mounts = append(mounts, v1.VolumeMount{Name: vol.Name, MountPath: fmt.Sprintf("/scratch-%d", j)})
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, vol)
	}
	for c := 0; c < o.containers; c++ {
		cname := "app"
		if c > 0 {
			cname = fmt.Sprintf("sidecar-%d", c)
		}
		image := "registry.k8s.io/pause:3.10"
		if o.image != "" {
			image = o.image
		}
		pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{
			Name:                     cname,
			Image:                    image,
			VolumeMounts:             mounts,
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: "File",
			ImagePullPolicy:          v1.PullIfNotPresent,
		})
	}
	return pod
}
