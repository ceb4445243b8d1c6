#!/bin/sh
# Check the fake containerd programs with both toolchains: generated code up
# to date, go vet, the Go tests (layouts by unsafe.Offsetof, the handler
# chain), and the symbols of unstripped builds (what podtrace's containerd
# catalogue looks for).
#
#   tests/fake-containerd/check.sh [WORKDIR]
set -eu

GO119=${GO119:-/usr/lib/go-1.19/bin/go}
GO127=${GO127:-/root/.podtrace/gobin-venv/lib/python3.11/site-packages/go/bin/go}
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod

here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"

(cd "$here/gen" && "$GO127" run . -check)

# vettest GO MODULEDIR [go flags...]
vettest() {
	gobin=$1
	dir=$2
	shift 2
	(cd "$here/$dir" && "$gobin" vet "$@" ./... && "$gobin" test -count=1 "$@" ./... >"$work/test.out" 2>&1) || {
		cat "$work/test.out" >&2
		echo "check.sh: $dir $*: go vet/test failed" >&2
		exit 1
	}
	grep -v 'no test files' "$work/test.out" || true
}
for gobin in "$GO119" "$GO127"; do
	echo "== $("$gobin" env GOVERSION)"
	for m in cri-api/gogo cri-api/protobuf driver containerd-1.7 containerd-2; do
		vettest "$gobin" $m
	done
	vettest "$gobin" containerd-2 -modfile=go.2.2.mod
done

GO119=$GO119 GO127=$GO127 "$here/build.sh" --unstripped "$work" >/dev/null
fail=0
# expect VARIANT PATTERN COUNT: COUNT functions of the unstripped build match.
expect() {
	n=$("$GO127" tool nm "$work/$1/containerd.unstripped" | awk '$2 == "T" || $2 == "t" { print $3 }' | grep -cE "$2" || true)
	if [ "$n" != "$3" ]; then
		echo "check.sh: $1: $n functions match $2, want $3" >&2
		fail=1
	fi
}
handlers='\.\(\*instrumentedService\)\.(RunPodSandbox|PullImage|CreateContainer|StartContainer|StopContainer|RemoveContainer|StopPodSandbox|RemovePodSandbox)$'
for v in containerd-1.7 containerd-1.7-go1.19; do
	expect $v "^github.com/containerd/containerd/pkg/cri/instrument$handlers" 8
	expect $v 'cri-api/pkg/apis/runtime/v1\.\(\*RunPodSandboxRequest\)\.(Reset|XXX_Unmarshal|Marshal)$' 3
	expect $v '\.ProtoReflect$' 0
done
for v in containerd-2.0 containerd-2.2; do
	expect $v "^github.com/containerd/containerd/v2/internal/cri/instrument$handlers" 8
	expect $v '^github.com/containerd/containerd/v2/internal/cri/server/images\.\(\*GRPCCRIImageService\)\.PullImage$' 1
	expect $v 'cri-api/pkg/apis/runtime/v1\.\(\*RunPodSandboxRequest\)\.Reset$' 1
done
expect containerd-2.0 '\.ProtoReflect$' 0
expect containerd-2.0 'cri-api/pkg/apis/runtime/v1\.\(\*RunPodSandboxRequest\)\.XXX_Unmarshal$' 1
expect containerd-2.2 'cri-api/pkg/apis/runtime/v1\.\(\*RunPodSandboxRequest\)\.ProtoReflect$' 1
expect containerd-2.2 'XXX_' 0
if [ "$fail" = 0 ]; then
	echo "check.sh: all good ($work)"
fi
exit $fail
