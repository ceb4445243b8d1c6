//go:build !kubelet136

package torture

import kubetypes "k8s.io/kubernetes/pkg/kubelet/types"

func runSyncPod(e *env, t *task) {
	mark(&t.spBefore)
	_, _ = e.kl.SyncPod(e.ctx, kubetypes.SyncPodCreate, t.pod, nil, t.status)
	mark(&t.spAfter)
}
