package kuberuntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRIClientOptions configures a CRIClient.
type CRIClientOptions struct {
	// Binary is the test tree's cri-client (tests/cri-client).
	Binary string
	// Socket is containerd's CRI socket.
	Socket string
	// GroundTruth, if set, is the JSONL file cri-client appends one record
	// per CRI call to (its own ground truth, separate from the workload's).
	GroundTruth string
}

// CRIClient is a runtimeService that drives a real container runtime by
// running the cri-client tool once per kubelet-side step, so that each
// kubelet function makes its own CRI calls while it runs, as on a node:
//
//	createPodSandbox → RunPodSandbox                      (cri-client run-sandbox)
//	startContainer   → PullImage, CreateContainer,
//	                   StartContainer                     (cri-client start-container)
//
// The pod's identity (name, namespace, UID), the image and the log directory
// go to cri-client from the configs the runtime manager built; cri-client
// builds its own CRI messages from them (a host-network sandbox running the
// image's /app). Not part of kubelet (its CRI client is gRPC in-process).
type CRIClient struct {
	opts CRIClientOptions

	mu      sync.Mutex
	started []startedPod // in RunPodSandbox order
	stopped map[string]bool
}

type startedPod struct {
	sandboxID string
	name      string
	namespace string
	uid       string
}

// NewCRIClient returns a CRIClient; nothing is run until the first call.
func NewCRIClient(opts CRIClientOptions) *CRIClient {
	return &CRIClient{opts: opts, stopped: map[string]bool{}}
}

// criClientResult is what run-sandbox, start-container and stop-pod print.
type criClientResult struct {
	SandboxID   *string `json:"sandbox_id"`
	ContainerID *string `json:"container_id"`
	Error       *string `json:"error"`
}

// run runs `cri-client SUBCOMMAND --socket S [--ground-truth F] ARGS…` and
// decodes the JSON line it prints.
func (c *CRIClient) run(ctx context.Context, sub string, args ...string) (criClientResult, error) {
	argv := []string{sub, "--socket", c.opts.Socket}
	if c.opts.GroundTruth != "" {
		argv = append(argv, "--ground-truth", c.opts.GroundTruth)
	}
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, c.opts.Binary, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	var res criClientResult
	line := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	decodeErr := errors.New("no output")
	if len(line) > 0 {
		decodeErr = json.Unmarshal(line, &res)
	}
	switch {
	case runErr != nil:
		msg := strings.TrimSpace(stderr.String())
		if res.Error != nil && *res.Error != "" {
			msg = *res.Error
		}
		if msg == "" {
			msg = runErr.Error()
		}
		return res, fmt.Errorf("cri-client %s: %s", sub, msg)
	case decodeErr != nil:
		return res, fmt.Errorf("cri-client %s: reading its output %q: %v", sub, stdout.String(), decodeErr)
	case res.Error != nil && *res.Error != "":
		return res, fmt.Errorf("cri-client %s: %s", sub, *res.Error)
	}
	return res, nil
}

// podArgs are the pod identity flags of run-sandbox and start-container.
func podArgs(config *runtimeapi.PodSandboxConfig) ([]string, error) {
	if config == nil || config.Metadata == nil {
		return nil, errors.New("pod sandbox config without metadata")
	}
	md := config.Metadata
	args := []string{"--name", md.Name, "--namespace", md.Namespace, "--uid", md.Uid}
	// LogDirectory is <podLogsDirectory>/<namespace>_<name>_<uid>; cri-client
	// takes the parent and appends the same.
	if config.LogDirectory != "" {
		args = append(args, "--log-dir", filepath.Dir(config.LogDirectory))
	}
	return args, nil
}

// RunPodSandbox runs `cri-client run-sandbox`: one RunPodSandbox call.
func (c *CRIClient) RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error) {
	args, err := podArgs(config)
	if err != nil {
		return "", err
	}
	res, err := c.run(ctx, "run-sandbox", args...)
	id := ""
	if res.SandboxID != nil {
		id = *res.SandboxID
	}
	if id != "" {
		// Remember it even on error: it has to be stopped at exit.
		md := config.Metadata
		c.mu.Lock()
		c.started = append(c.started, startedPod{sandboxID: id, name: md.Name, namespace: md.Namespace, uid: md.Uid})
		c.mu.Unlock()
	}
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", errors.New("cri-client run-sandbox: no sandbox id")
	}
	return id, nil
}

// PullCreateAndStartContainer runs `cri-client start-container`: PullImage,
// CreateContainer and StartContainer in one process (see imageAwareRuntime).
func (c *CRIClient) PullCreateAndStartContainer(ctx context.Context, podSandboxID string, config *runtimeapi.ContainerConfig, sandboxConfig *runtimeapi.PodSandboxConfig) (string, error) {
	args, err := podArgs(sandboxConfig)
	if err != nil {
		return "", err
	}
	if config == nil || config.Image == nil || config.Image.Image == "" {
		return "", errors.New("container config without an image")
	}
	args = append(args, "--sandbox-id", podSandboxID, "--image", config.Image.Image)
	if config.Metadata != nil && config.Metadata.Name != "" {
		args = append(args, "--container-name", config.Metadata.Name)
	}
	res, err := c.run(ctx, "start-container", args...)
	if err != nil {
		return "", err
	}
	if res.ContainerID == nil || *res.ContainerID == "" {
		return "", errors.New("cri-client start-container: no container id")
	}
	return *res.ContainerID, nil
}

// CreateContainer is not used for a CRIClient (startContainer calls
// PullCreateAndStartContainer); it is there to satisfy runtimeService.
func (c *CRIClient) CreateContainer(ctx context.Context, podSandboxID string, config *runtimeapi.ContainerConfig, sandboxConfig *runtimeapi.PodSandboxConfig) (string, error) {
	return "", errors.New("cri-client runtime: CreateContainer is done by PullCreateAndStartContainer")
}

// StartContainer: see CreateContainer.
func (c *CRIClient) StartContainer(ctx context.Context, containerID string) error {
	return errors.New("cri-client runtime: StartContainer is done by PullCreateAndStartContainer")
}

// StopPods stops and removes every pod this client started and has not
// stopped yet (`cri-client stop-pod`: StopContainer and RemoveContainer for
// each container, then StopPodSandbox and RemovePodSandbox), one after
// another in start order. It goes on after a failure and returns all errors
// joined; the number of pods it stopped without error.
func (c *CRIClient) StopPods(ctx context.Context) (int, error) {
	c.mu.Lock()
	var todo []startedPod
	for _, p := range c.started {
		if !c.stopped[p.sandboxID] {
			c.stopped[p.sandboxID] = true
			todo = append(todo, p)
		}
	}
	c.mu.Unlock()
	var errs []string
	ok := 0
	for _, p := range todo {
		if _, err := c.run(ctx, "stop-pod", "--sandbox-id", p.sandboxID); err != nil {
			errs = append(errs, fmt.Sprintf("pod %s/%s (sandbox %s): %v", p.namespace, p.name, p.sandboxID, err))
			continue
		}
		ok++
	}
	if len(errs) > 0 {
		return ok, errors.New(strings.Join(errs, "; "))
	}
	return ok, nil
}
