// Package driver is the client half of the fake containerd programs: it
// parses the command line, plays the CRI calls kubelet makes for --pods pods
// against the program's instrumented CRI service, and writes one
// ground-truth JSON line per call.
//
// Each call goes through a gRPC-like path: the request is encoded by the
// codec, decoded again into a fresh message on a new goroutine (gRPC serves
// every call on its own goroutine), and the handler is called through the
// runtime.RuntimeServiceServer / runtime.ImageServiceServer interface. The
// call is timed there, immediately around the handler, with
// clock_gettime(CLOCK_MONOTONIC), the clock bpf_ktime_get_ns() reads.
package driver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"
	"unsafe"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Services is what a fake containerd serves: its instrumented CRI service.
type Services interface {
	runtime.RuntimeServiceServer
	runtime.ImageServiceServer
}

// Env is what the fake containerd's services are built with.
type Env struct {
	// Images present in the fake registry (every other pull fails).
	Images []string
	// Log is where the services log to (io.Discard unless --verbose).
	Log io.Writer
}

// Call is one line of the ground truth: one CRI call, with everything
// known about its pod, whether it failed, and when the handler ran.
type Call struct {
	Call          string `json:"call"`
	PodName       string `json:"pod_name"`
	PodUID        string `json:"pod_uid"`
	PodNamespace  string `json:"pod_namespace"`
	Attempt       uint32 `json:"attempt"`
	SandboxID     string `json:"sandbox_id"`
	ContainerID   string `json:"container_id"`
	ContainerName string `json:"container_name"`
	// ContainerAttempt is ContainerMetadata.Attempt (the restart count).
	ContainerAttempt uint32 `json:"container_attempt"`
	Image            string `json:"image"`
	ImageRef         string `json:"image_ref"`
	Error            bool   `json:"error"`
	ErrorText        string `json:"error_text,omitempty"`
	StartMono        int64  `json:"start_mono_ns"`
	EndMono          int64  `json:"end_mono_ns"`
	// The handler's own stamps (Enter): on entry and just before it
	// returns, so inside the traced span, while StartMono/EndMono, taken
	// around the call, are outside it.
	InnerStartMono int64 `json:"inner_start_mono_ns"`
	InnerEndMono   int64 `json:"inner_end_mono_ns"`
}

type innerKey struct{}

type inner struct{ start, end int64 }

// Enter stamps the start of the traced handler from inside it; defer the
// returned func to stamp its end. Without the driver's ctx it does nothing.
func Enter(ctx context.Context) func() {
	in, _ := ctx.Value(innerKey{}).(*inner)
	if in == nil {
		return func() {}
	}
	in.start = MonoNow()
	return func() { in.end = MonoNow() }
}

// MonoNow is clock_gettime(CLOCK_MONOTONIC) in nanoseconds, by a real
// system call (not the vDSO, not Go's runtime clock).
func MonoNow() int64 {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic("clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return ts.Nano()
}

// MissingImage is pulled once (for the first pod) and is not in the fake
// registry: that PullImage fails.
const MissingImage = "registry.k8s.io/podtrace/does-not-exist:v0.0.0"

type pod struct {
	name, uid, namespace string
	attempt              uint32
	image, container     string
	containerAttempt     uint32
	sandboxID, imageRef  string
	containerID          string
	config               *runtime.PodSandboxConfig
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func newUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func newPod(i int) *pod {
	p := &pod{
		name:      fmt.Sprintf("web-%d-%s", i, randomHex(4)),
		uid:       newUID(),
		namespace: fmt.Sprintf("tenant-%d-%s", i, randomHex(2)),
		attempt:   uint32(i + 1),
		image:     podImage(i),
		container: fmt.Sprintf("app-%d", i),
		// Neither 0 nor the pod's attempt: a wrong read shows.
		containerAttempt: uint32(2*i + 3),
	}
	p.config = &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{
			Name: p.name, Uid: p.uid, Namespace: p.namespace, Attempt: p.attempt,
		},
		Hostname:     "",
		LogDirectory: fmt.Sprintf("/var/log/pods/%s_%s_%s", p.namespace, p.name, p.uid),
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{p.namespace + ".svc.cluster.local"}},
		Labels: map[string]string{
			"io.kubernetes.pod.name": p.name, "io.kubernetes.pod.namespace": p.namespace, "io.kubernetes.pod.uid": p.uid,
		},
		Annotations: map[string]string{"kubernetes.io/config.source": "api"},
		Linux:       &runtime.LinuxPodSandboxConfig{CgroupParent: "/kubepods/besteffort/pod" + p.uid},
	}
	return p
}

// record is the ground-truth line of a call of pod p, before the call.
func (p *pod) record(call string) *Call {
	return &Call{
		Call: call, PodName: p.name, PodUID: p.uid, PodNamespace: p.namespace, Attempt: p.attempt,
		SandboxID: p.sandboxID, ContainerID: p.containerID, ContainerName: p.container, ContainerAttempt: p.containerAttempt,
		Image: p.image, ImageRef: p.imageRef,
	}
}

type client struct {
	srv Services
	mu  sync.Mutex
	gt  []*Call
}

type reply struct {
	data       []byte
	err        error
	start, end int64
	inner      inner
}

// unary is one CRI call of a gRPC client to the server: encode, decode on a
// fresh server goroutine, call the handler there (timed), encode the
// response, decode it on the client side.
func unary[Req, Resp runtime.ProtoMessage](c *client, rec *Call, req Req, newReq func() Req, newResp func() Resp,
	handler func(context.Context, Req) (Resp, error)) (Resp, error) {
	var none Resp
	data, err := runtime.Marshal(req)
	if err != nil {
		return none, err
	}
	done := make(chan reply, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		in := newReq()
		if err := runtime.Unmarshal(data, in); err != nil {
			done <- reply{err: err}
			return
		}
		stamps := &inner{}
		ctx = context.WithValue(ctx, innerKey{}, stamps)
		start := MonoNow()
		resp, err := handler(ctx, in)
		end := MonoNow()
		var out []byte
		if err == nil {
			out, err = runtime.Marshal(resp)
		}
		done <- reply{out, err, start, end, *stamps}
	}()
	r := <-done
	rec.StartMono, rec.EndMono = r.start, r.end
	rec.InnerStartMono, rec.InnerEndMono = r.inner.start, r.inner.end
	var resp Resp
	if r.err == nil {
		resp = newResp()
		r.err = runtime.Unmarshal(r.data, resp)
	}
	if r.err != nil {
		rec.Error, rec.ErrorText = true, r.err.Error()
		resp = none
	}
	c.mu.Lock()
	c.gt = append(c.gt, rec)
	c.mu.Unlock()
	return resp, r.err
}

// startPod plays kubelet's start of a pod: RunPodSandbox, PullImage,
// CreateContainer, StartContainer.
func (c *client) startPod(p *pod, failPull bool) error {
	rec := p.record("RunPodSandbox")
	run, err := unary(c, rec, &runtime.RunPodSandboxRequest{Config: p.config, RuntimeHandler: ""},
		newRunReq, newRunResp, c.srv.RunPodSandbox)
	if err != nil {
		return fmt.Errorf("RunPodSandbox: %w", err)
	}
	p.sandboxID, rec.SandboxID = run.PodSandboxId, run.PodSandboxId

	if failPull {
		// A sidecar whose image is not in the registry: kubelet's ErrImagePull.
		rec := p.record("PullImage")
		rec.Image, rec.ContainerName = MissingImage, "sidecar"
		_, err := unary(c, rec, &runtime.PullImageRequest{
			Image: &runtime.ImageSpec{Image: MissingImage}, SandboxConfig: p.config,
		}, newPullReq, newPullResp, c.srv.PullImage)
		if err == nil {
			return fmt.Errorf("PullImage %s: want an error, got none", MissingImage)
		}
	}

	rec = p.record("PullImage")
	pull, err := unary(c, rec, &runtime.PullImageRequest{
		Image: &runtime.ImageSpec{Image: p.image}, Auth: &runtime.AuthConfig{}, SandboxConfig: p.config,
	}, newPullReq, newPullResp, c.srv.PullImage)
	if err != nil {
		return fmt.Errorf("PullImage: %w", err)
	}
	p.imageRef, rec.ImageRef = pull.ImageRef, pull.ImageRef

	rec = p.record("CreateContainer")
	create, err := unary(c, rec, &runtime.CreateContainerRequest{
		PodSandboxId: p.sandboxID,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: p.container, Attempt: p.containerAttempt},
			Image:    &runtime.ImageSpec{Image: p.imageRef, UserSpecifiedImage: p.image},
			Command:  []string{"/app"},
			Envs:     []*runtime.KeyValue{{Key: "POD_NAME", Value: p.name}},
			LogPath:  p.container + "/0.log",
			Labels:   map[string]string{"io.kubernetes.container.name": p.container},
		},
		SandboxConfig: p.config,
	}, newCreateReq, newCreateResp, c.srv.CreateContainer)
	if err != nil {
		return fmt.Errorf("CreateContainer: %w", err)
	}
	p.containerID, rec.ContainerID = create.ContainerId, create.ContainerId

	if _, err := unary(c, p.record("StartContainer"), &runtime.StartContainerRequest{ContainerId: p.containerID},
		newStartReq, newStartResp, c.srv.StartContainer); err != nil {
		return fmt.Errorf("StartContainer: %w", err)
	}
	return nil
}

// stopPod plays the pod's deletion: StopContainer, RemoveContainer,
// StopPodSandbox, RemovePodSandbox.
func (c *client) stopPod(p *pod) error {
	if _, err := unary(c, p.record("StopContainer"), &runtime.StopContainerRequest{ContainerId: p.containerID, Timeout: 30},
		newStopCReq, newStopCResp, c.srv.StopContainer); err != nil {
		return fmt.Errorf("StopContainer: %w", err)
	}
	if _, err := unary(c, p.record("RemoveContainer"), &runtime.RemoveContainerRequest{ContainerId: p.containerID},
		newRemoveCReq, newRemoveCResp, c.srv.RemoveContainer); err != nil {
		return fmt.Errorf("RemoveContainer: %w", err)
	}
	if _, err := unary(c, p.record("StopPodSandbox"), &runtime.StopPodSandboxRequest{PodSandboxId: p.sandboxID},
		newStopSReq, newStopSResp, c.srv.StopPodSandbox); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := unary(c, p.record("RemovePodSandbox"), &runtime.RemovePodSandboxRequest{PodSandboxId: p.sandboxID},
		newRemoveSReq, newRemoveSResp, c.srv.RemovePodSandbox); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return nil
}

func newRunReq() *runtime.RunPodSandboxRequest          { return new(runtime.RunPodSandboxRequest) }
func newRunResp() *runtime.RunPodSandboxResponse        { return new(runtime.RunPodSandboxResponse) }
func newPullReq() *runtime.PullImageRequest             { return new(runtime.PullImageRequest) }
func newPullResp() *runtime.PullImageResponse           { return new(runtime.PullImageResponse) }
func newCreateReq() *runtime.CreateContainerRequest     { return new(runtime.CreateContainerRequest) }
func newCreateResp() *runtime.CreateContainerResponse   { return new(runtime.CreateContainerResponse) }
func newStartReq() *runtime.StartContainerRequest       { return new(runtime.StartContainerRequest) }
func newStartResp() *runtime.StartContainerResponse     { return new(runtime.StartContainerResponse) }
func newStopCReq() *runtime.StopContainerRequest        { return new(runtime.StopContainerRequest) }
func newStopCResp() *runtime.StopContainerResponse      { return new(runtime.StopContainerResponse) }
func newRemoveCReq() *runtime.RemoveContainerRequest    { return new(runtime.RemoveContainerRequest) }
func newRemoveCResp() *runtime.RemoveContainerResponse  { return new(runtime.RemoveContainerResponse) }
func newStopSReq() *runtime.StopPodSandboxRequest       { return new(runtime.StopPodSandboxRequest) }
func newStopSResp() *runtime.StopPodSandboxResponse     { return new(runtime.StopPodSandboxResponse) }
func newRemoveSReq() *runtime.RemovePodSandboxRequest   { return new(runtime.RemovePodSandboxRequest) }
func newRemoveSResp() *runtime.RemovePodSandboxResponse { return new(runtime.RemovePodSandboxResponse) }

// Images is the fake registry's content for n pods: one image per pod.
func Images(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, podImage(i))
	}
	return out
}

func podImage(i int) string { return fmt.Sprintf("registry.k8s.io/podtrace/app-%d:v1.%d.0", i, i) }

// Options are the command line's.
type Options struct {
	Pods        int
	GroundTruth string
	StartDelay  time.Duration
	Parallel    bool
	Verbose     bool
}

// Run plays the calls of o.Pods pods against srv; the ground truth comes
// back sorted by start time.
func Run(srv Services, o Options) ([]*Call, error) {
	c := &client{srv: srv}
	pods := make([]*pod, o.Pods)
	for i := range pods {
		pods[i] = newPod(i)
	}
	if o.StartDelay > 0 {
		time.Sleep(o.StartDelay)
	}
	each := func(f func(i int, p *pod) error) error {
		if !o.Parallel {
			for i, p := range pods {
				if err := f(i, p); err != nil {
					return fmt.Errorf("pod %s: %w", p.name, err)
				}
			}
			return nil
		}
		errs := make([]error, len(pods))
		var wg sync.WaitGroup
		for i, p := range pods {
			wg.Add(1)
			go func(i int, p *pod) {
				defer wg.Done()
				if err := f(i, p); err != nil {
					errs[i] = fmt.Errorf("pod %s: %w", p.name, err)
				}
			}(i, p)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	err := each(func(i int, p *pod) error { return c.startPod(p, i == 0) })
	if err == nil {
		err = each(func(_ int, p *pod) error { return c.stopPod(p) })
	}
	sort.SliceStable(c.gt, func(i, j int) bool { return c.gt[i].StartMono < c.gt[j].StartMono })
	return c.gt, err
}

// Write writes the ground truth as JSON lines.
func Write(path string, calls []*Call) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, c := range calls {
		if err := enc.Encode(c); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// Main is the fake containerd's main: `containerd --pods N --ground-truth
// FILE [--start-delay D] [--parallel] [--verbose]`.
func Main(version string, newServices func(Env) Services) {
	fs := flag.NewFlagSet("containerd", flag.ExitOnError)
	var o Options
	fs.IntVar(&o.Pods, "pods", 3, "number of pods to start and delete")
	fs.StringVar(&o.GroundTruth, "ground-truth", "", "write one JSON line per CRI call to this file")
	fs.DurationVar(&o.StartDelay, "start-delay", 0, "wait this long before the first call")
	fs.BoolVar(&o.Parallel, "parallel", false, "run the pods concurrently (default: one call at a time)")
	fs.BoolVar(&o.Verbose, "verbose", false, "log every CRI call to stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "fake containerd %s for podtrace's tests: plays the CRI calls of --pods pods\n\n", version)
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	env := Env{Images: Images(o.Pods), Log: io.Discard}
	if o.Verbose {
		env.Log = os.Stderr
	}
	calls, err := Run(newServices(env), o)
	if o.GroundTruth != "" {
		if werr := Write(o.GroundTruth, calls); werr != nil {
			fmt.Fprintf(os.Stderr, "containerd: writing ground truth: %v\n", werr)
			os.Exit(1)
		}
	}
	failed := 0
	for _, c := range calls {
		if c.Error {
			failed++
		}
	}
	fmt.Fprintf(os.Stderr, "fake containerd %s: %d pods, %d CRI calls, %d failed as planned\n", version, o.Pods, len(calls), failed)
	if err != nil {
		fmt.Fprintf(os.Stderr, "containerd: %v\n", err)
		os.Exit(1)
	}
}
