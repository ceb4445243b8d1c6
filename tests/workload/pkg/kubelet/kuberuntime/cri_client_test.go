package kuberuntime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
)

// fakeCRIClient writes a shell script standing in for cri-client: it logs
// its arguments, one line per run, and prints what the real one prints.
func fakeCRIClient(t *testing.T, failOn string) (bin, log string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "cri-client")
	log = filepath.Join(dir, "calls.log")
	script := `#!/bin/sh
echo "$*" >> '` + log + `'
sub=$1
if [ "$sub" = '` + failOn + `' ]; then
	echo "cri-client: $sub: boom" >&2
	echo '{"sandbox_id":null,"container_id":null,"error":"boom"}'
	exit 1
fi
case $sub in
run-sandbox) echo '{"sandbox_id":"sb-1","error":null}' ;;
start-container) echo '{"sandbox_id":"sb-1","container_id":"ctr-1","error":null}' ;;
stop-pod) echo '{"sandbox_id":"sb-1","error":null}' ;;
*) exit 2 ;;
esac
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

func readCalls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestCRIClientSyncPod(t *testing.T) {
	bin, log := fakeCRIClient(t, "none")
	c := NewCRIClient(CRIClientOptions{Binary: bin, Socket: "/run/ctrd.sock", GroundTruth: "/tmp/cgt.jsonl"})
	logs := t.TempDir()
	m := NewKubeGenericRuntimeManager(c, logs, nil)
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u-1"}}
	pod.Spec.Containers = []v1.Container{{Name: "app", Image: "reg/app:1"}}
	res := m.SyncPod(context.Background(), pod, &kubecontainer.PodStatus{ID: pod.UID}, nil, nil)
	if err := res.Error(); err != nil {
		t.Fatal(err)
	}
	calls := readCalls(t, log)
	common := "--socket /run/ctrd.sock --ground-truth /tmp/cgt.jsonl --name p --namespace ns --uid u-1 --log-dir " + logs
	want := []string{
		"run-sandbox " + common,
		"start-container " + common + " --sandbox-id sb-1 --image reg/app:1 --container-name app",
	}
	if len(calls) != len(want) {
		t.Fatalf("calls %q, want %q", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d: %q, want %q", i, calls[i], want[i])
		}
	}
	n, err := c.StopPods(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("StopPods: %d, %v", n, err)
	}
	// A second StopPods stops nothing.
	if n, err := c.StopPods(context.Background()); err != nil || n != 0 {
		t.Fatalf("second StopPods: %d, %v", n, err)
	}
	calls = readCalls(t, log)
	if got, w := calls[len(calls)-1], "stop-pod --socket /run/ctrd.sock --ground-truth /tmp/cgt.jsonl --sandbox-id sb-1"; got != w || len(calls) != 3 {
		t.Errorf("calls %q, last want %q", calls, w)
	}
}

func TestCRIClientErrors(t *testing.T) {
	bin, _ := fakeCRIClient(t, "start-container")
	c := NewCRIClient(CRIClientOptions{Binary: bin, Socket: "/s"})
	m := NewKubeGenericRuntimeManager(c, t.TempDir(), nil)
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}}
	pod.Spec.Containers = []v1.Container{{Name: "app", Image: "img"}}
	res := m.SyncPod(context.Background(), pod, &kubecontainer.PodStatus{ID: pod.UID}, nil, nil)
	err := res.Error()
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("SyncPod error %v, want one with the cri-client error", err)
	}
	// The sandbox was made: it is still stopped.
	if n, err := c.StopPods(context.Background()); err != nil || n != 1 {
		t.Fatalf("StopPods: %d, %v", n, err)
	}

	bin, _ = fakeCRIClient(t, "run-sandbox")
	c = NewCRIClient(CRIClientOptions{Binary: bin, Socket: "/s"})
	m = NewKubeGenericRuntimeManager(c, t.TempDir(), nil)
	res = m.SyncPod(context.Background(), pod, &kubecontainer.PodStatus{ID: pod.UID}, nil, nil)
	if err := res.Error(); err == nil {
		t.Fatal("no error from a failing run-sandbox")
	}
	if n, err := c.StopPods(context.Background()); err != nil || n != 0 {
		t.Fatalf("StopPods after a failed run-sandbox: %d, %v", n, err)
	}
}
