#!/bin/sh
# Build podtrace's tiny test images as OCI image layouts, by hand.
#
#   tests/containerd/build-images.sh OUTDIR
#
# Produces OUTDIR/pause and OUTDIR/app, each an OCI image layout holding one
# image tagged "1": one gzip layer with a static Go 1.19 binary at /pause or
# /app, an image config whose Entrypoint is that binary, a manifest and an
# index. Push one with
#
#   skopeo copy --insecure-policy --dest-tls-verify=false \
#       oci:OUTDIR/app:1 docker://127.0.0.1:PORT/podtrace/app:1
#
# Offline: GOTOOLCHAIN=local GOPROXY=off, standard library only.
# Environment: GO (default /usr/lib/go-1.19/bin/go).
set -eu

out=${1:?usage: build-images.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
GO=${GO:-/usr/lib/go-1.19/bin/go}
[ -x "$GO" ] || { echo "build-images.sh: no Go at $GO (apt-get install golang-go, or set GO)" >&2; exit 1; }
for t in tar gzip sha256sum stat; do
    command -v $t >/dev/null || { echo "build-images.sh: $t not found" >&2; exit 1; }
done

arch=$(GOTOOLCHAIN=local "$GO" env GOARCH)
mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# put BLOBS FILE: copy FILE into the layout's blobs, print its digest hex.
put() {
    d=$(sha "$2")
    cp "$2" "$1/blobs/sha256/$d"
    echo "$d"
}

for name in pause app; do
    (cd "$here/images" && CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod \
        GOCACHE="${GOCACHE:-$work/gocache}" \
        "$GO" build -trimpath -ldflags='-s -w' -o "$work/rootfs-$name/$name" "./$name")
    chmod 0755 "$work/rootfs-$name/$name"

    layout="$work/layout-$name"
    mkdir -p "$layout/blobs/sha256"
    printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"

    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
        -C "$work/rootfs-$name" -cf "$work/layer-$name.tar" "$name"
    diff_id=$(sha "$work/layer-$name.tar")
    gzip -n -9 -c "$work/layer-$name.tar" > "$work/layer-$name.tar.gz"
    layer=$(put "$layout" "$work/layer-$name.tar.gz")
    layer_size=$(size "$work/layer-$name.tar.gz")

    printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/%s"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"podtrace tests/containerd/build-images.sh"}]}' \
        "$arch" "$name" "$diff_id" > "$work/config-$name.json"
    config=$(put "$layout" "$work/config-$name.json")
    config_size=$(size "$work/config-$name.json")

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config" "$config_size" "$layer" "$layer_size" > "$work/manifest-$name.json"
    manifest=$(put "$layout" "$work/manifest-$name.json")
    manifest_size=$(size "$work/manifest-$name.json")

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
        "$manifest" "$manifest_size" "$arch" > "$layout/index.json"

    rm -rf "$out/$name"
    mv "$layout" "$out/$name"
    echo "built $out/$name (oci layout, tag 1, manifest sha256:$manifest)"
done
