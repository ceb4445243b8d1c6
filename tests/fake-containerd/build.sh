#!/bin/sh
# Build the fake containerd programs (see README.md) the way containerd
# releases are built: -trimpath, stripped (-s -w).
#
#   tests/fake-containerd/build.sh [--unstripped] OUTDIR
#
# produces
#   OUTDIR/containerd-1.7/containerd        containerd 1.7 layout, Go 1.27
#   OUTDIR/containerd-1.7-go1.19/containerd containerd 1.7 layout, Go 1.19
#   OUTDIR/containerd-2.0/containerd        containerd 2.0/2.1 layout (cri-api v0.31, gogo), Go 1.27
#   OUTDIR/containerd-2.2/containerd        containerd 2.2+ layout (cri-api v0.34, protobuf-go), Go 1.27
# and with --unstripped also OUTDIR/<variant>/containerd.unstripped (same
# flags minus -s -w, for go tool nm/objdump).
#
# Toolchains come from $GO119 and $GO127. Everything is offline
# (GOTOOLCHAIN=local GOPROXY=off): the modules use the standard library
# only, and each other through local `replace` directives.
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

GO119=${GO119:-/usr/lib/go-1.19/bin/go}
GO127=${GO127:-/root/.podtrace/gobin-venv/lib/python3.11/site-packages/go/bin/go}
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

# build GO VARIANT MODULEDIR LDFLAGS [extra go build flags...]
build() {
	gobin=$1
	variant=$2
	dir=$3
	ldflags=$4
	shift 4
	if ! [ -x "$gobin" ]; then
		echo "build.sh: Go toolchain for $variant not found: $gobin" >&2
		exit 1
	fi
	mkdir -p "$out/$variant"
	(cd "$here/$dir" && "$gobin" build -trimpath -buildvcs=false -ldflags="-s -w $ldflags" "$@" \
		-o "$out/$variant/containerd.tmp.$$" ./cmd/containerd)
	# Atomic: a test may be running the previous build.
	mv -f "$out/$variant/containerd.tmp.$$" "$out/$variant/containerd"
	if [ "$unstripped" = 1 ]; then
		(cd "$here/$dir" && "$gobin" build -trimpath -buildvcs=false -ldflags="$ldflags" "$@" \
			-o "$out/$variant/containerd.unstripped" ./cmd/containerd)
	fi
	echo "$out/$variant/containerd: $("$gobin" env GOVERSION) $dir $*"
}

build "$GO127" containerd-1.7 containerd-1.7 ""
build "$GO119" containerd-1.7-go1.19 containerd-1.7 ""
build "$GO127" containerd-2.0 containerd-2 "-X main.version=2.0"
build "$GO127" containerd-2.2 containerd-2 "-X main.version=2.2" -modfile=go.2.2.mod
