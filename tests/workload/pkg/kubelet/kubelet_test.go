package kubelet

import (
	"reflect"
	"runtime"
	"testing"
)

func TestProbedSymbolNames(t *testing.T) {
	for _, c := range []struct {
		fn   interface{}
		want string
	}{
		{(*Kubelet).SyncPod, "k8s.io/kubernetes/pkg/kubelet.(*Kubelet).SyncPod"},
		{(*podWorkers).podWorkerLoop, "k8s.io/kubernetes/pkg/kubelet.(*podWorkers).podWorkerLoop"},
	} {
		if got := runtime.FuncForPC(reflect.ValueOf(c.fn).Pointer()).Name(); got != c.want {
			t.Errorf("symbol %q, want %q", got, c.want)
		}
	}
}
