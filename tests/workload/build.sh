#!/bin/sh
# Build the podtrace test workload (a kubelet-shaped program) the way
# Kubernetes releases are built: -trimpath, stripped (-s -w).
#
#   tests/workload/build.sh [--unstripped] OUTDIR
#
# produces
#   OUTDIR/go1.19/kubelet        Go 1.19, static executable
#   OUTDIR/go1.19-pie/kubelet    Go 1.19, -buildmode=pie
#   OUTDIR/go1.27/kubelet        Go 1.27, static executable
#   OUTDIR/go1.26-kubelet1.36/kubelet  Go 1.26 (the real kubelets' toolchain),
#                                -tags kubelet136: kubelet 1.36's shapes
# and with --unstripped also OUTDIR/<variant>/kubelet.unstripped (same flags
# minus -s -w: .symtab and DWARF, for go tool nm/objdump and for checking a
# pclntab reader against the symbol table).
#
# Toolchains come from $GO119, $GO127 and $GO126. Everything is offline
# (GOTOOLCHAIN=local GOPROXY=off): the module has no external dependencies.
set -eu

unstripped=0
if [ "${1:-}" = "--unstripped" ]; then
	unstripped=1
	shift
fi
if [ $# -ne 1 ]; then
	echo "usage: $0 [--unstripped] OUTDIR" >&2
	exit 2
fi

GO119=${GO119:-/usr/bin/go}
GO127=${GO127:-/root/.podtrace/gobin-venv/lib/python3.11/site-packages/go/bin/go}
GO126=${GO126:-/usr/local/go/bin/go}
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$here"

# build GO VARIANT [extra go build flags...]
build() {
	gobin=$1
	variant=$2
	shift 2
	if ! [ -x "$gobin" ]; then
		echo "build.sh: Go toolchain for $variant not found: $gobin" >&2
		exit 1
	fi
	mkdir -p "$out/$variant"
	"$gobin" build -trimpath -buildvcs=false -ldflags='-s -w' "$@" -o "$out/$variant/kubelet" ./cmd/kubelet
	if [ "$unstripped" = 1 ]; then
		"$gobin" build -trimpath -buildvcs=false "$@" -o "$out/$variant/kubelet.unstripped" ./cmd/kubelet
	fi
	echo "$out/$variant/kubelet: $("$gobin" env GOVERSION) $*"
}

build "$GO119" go1.19
build "$GO119" go1.19-pie -buildmode=pie
build "$GO127" go1.27
build "$GO126" go1.26-kubelet1.36 -tags kubelet136
