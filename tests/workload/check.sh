#!/bin/sh
# Check that every function podtrace's kubelet probe catalogue names exists
# in the workload binary under its exact kubelet symbol, and that the
# compiler inlined none of them, with both toolchains. Also runs go vet and
# the unit tests (main module + staging modules).
#
#   tests/workload/check.sh [WORKDIR]
set -eu

GO119=${GO119:-/usr/bin/go}
GO127=${GO127:-/root/.podtrace/gobin-venv/lib/python3.11/site-packages/go/bin/go}
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod

here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cd "$here"

# The probed functions: symbol names exactly as in kubelet 1.31-1.33.
# (verifyVolumesMountedFunc itself is inlinable, as in kubelet: Go 1.19
# keeps it out of line, Go 1.27 inlines it; both name its closure
# `(*volumeManager).verifyVolumesMountedFunc.func1`. Go 1.21-1.26 name the
# inlined closure after the chain, `WaitForAttachAndMount.(*volumeManager).
# verifyVolumesMountedFunc.func1`, as in real kubelet 1.34/1.36: build.sh's
# go1.26-kubelet1.36.)
symbols='k8s.io/kubernetes/pkg/kubelet.(*Kubelet).SyncPod
k8s.io/kubernetes/pkg/kubelet.(*podWorkers).podWorkerLoop
k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).WaitForAttachAndMount
k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).verifyVolumesMountedFunc.func1
k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).getUnmountedVolumes
k8s.io/kubernetes/pkg/kubelet/volumemanager/cache.(*actualStateOfWorld).MarkVolumeAsMounted
k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler.(*reconciler).Run
k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler.(*reconciler).reconciliationLoopFunc
k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler.(*reconciler).reconciliationLoopFunc.func1
k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler.(*reconciler).reconcile
k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler.(*reconciler).mountOrAttachVolumes
k8s.io/kubernetes/pkg/kubelet/volumemanager/populator.(*desiredStateOfWorldPopulator).Run
k8s.io/kubernetes/pkg/kubelet/volumemanager/populator.(*desiredStateOfWorldPopulator).populatorLoop
k8s.io/kubernetes/pkg/kubelet/volumemanager/populator.(*desiredStateOfWorldPopulator).findAndAddNewPods
k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).Relist
k8s.io/kubernetes/pkg/kubelet/kuberuntime.(*kubeGenericRuntimeManager).SyncPod
k8s.io/kubernetes/pkg/kubelet/kuberuntime.(*kubeGenericRuntimeManager).createPodSandbox
k8s.io/kubernetes/pkg/kubelet/kuberuntime.(*kubeGenericRuntimeManager).startContainer
k8s.io/apimachinery/pkg/util/wait.PollUntilContextTimeout
k8s.io/apimachinery/pkg/util/wait.Until
k8s.io/apimachinery/pkg/util/wait.JitterUntil'
# Only with -tags kubelet136 (kubelet 1.36's PLEG).
symbols136='k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).relistPod
k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).reconcilePodRecord
k8s.io/kubernetes/pkg/kubelet/pleg.(*GenericPLEG).workerLoopIteration'

fail=0
for gobin in "$GO119" "$GO127"; do
	v=$("$gobin" env GOVERSION)
	echo "== $v"
	"$gobin" vet ./... k8s.io/api/... k8s.io/apimachinery/... k8s.io/client-go/... k8s.io/cri-api/...
	"$gobin" vet -tags kubelet136 ./...
	"$gobin" test -count=1 ./... k8s.io/api/... k8s.io/apimachinery/... | grep -v 'no test files'
	"$gobin" test -count=1 -tags kubelet136 ./... | grep -v 'no test files'

	for tags in "" kubelet136; do
	want=$symbols
	if [ -n "$tags" ]; then
		want="$symbols
$symbols136"
	fi
	bin="$work/kubelet-$v$tags"
	# -m=2 prints every inlining decision; -trimpath as in release builds.
	"$gobin" build -trimpath -buildvcs=false -tags "$tags" -gcflags='all=-m=2' -o "$bin" ./cmd/kubelet 2>"$work/inl-$v$tags.txt"
	"$gobin" tool nm "$bin" | awk '{print $3}' | sort -u >"$work/nm-$v$tags.txt"
	echo "$want" | while IFS= read -r sym; do
		if ! grep -qxF "$sym" "$work/nm-$v$tags.txt"; then
			echo "MISSING symbol ($v $tags): $sym"
			echo x >>"$work/fail"
		fi
		# -m output names a function as pkg.(*T).m from other packages and
		# as (*T).m inside its own package.
		tail=${sym##*/}     # volumemanager.(*volumeManager).getUnmountedVolumes
		local_name=${tail#*.} # (*volumeManager).getUnmountedVolumes
		sites=$(awk -v a="$tail" -v b="$local_name" '
			{ i = index($0, "inlining call to "); if (i == 0) next
			  f = substr($0, i + 17); sub(/ .*/, "", f)
			  if (f == a || f == b) print }' "$work/inl-$v$tags.txt")
		if [ -n "$sites" ]; then
			echo "INLINED somewhere ($v $tags): $sym"
			echo "$sites" | head -3
			echo x >>"$work/fail"
		fi
		# Named functions must have been declared not inlinable (closures
		# are checked by their presence in the symbol table above).
		case "$sym" in
		*.func[0-9]*) ;;
		*)
			if ! grep -qF "cannot inline $local_name: " "$work/inl-$v$tags.txt"; then
				echo "INLINABLE ($v $tags): $sym"
				echo x >>"$work/fail"
			fi
			;;
		esac
	done
	echo "$(echo "$want" | wc -l) probed symbols present, not inlinable, never inlined (tags: ${tags:-none})"
	done
done
if [ -e "$work/fail" ]; then
	echo "check.sh: FAILED" >&2
	exit 1
fi
echo "check.sh: OK"
