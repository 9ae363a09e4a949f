#!/usr/bin/env bash
# Builds the layerset-csi image without a Docker engine: static binaries for each platform, then
# hack/image assembles what the Dockerfile would (see hack/image/main.go). Output in OUT:
#   layerset-csi-linux-ARCH.tar   docker-archive, e.g. ctr -n k8s.io images import layerset-csi-linux-amd64.tar
#   oci/                          OCI image layout with the multi-platform index, e.g. crane push oci/ REF
#
# Environment (all optional):
#   PLATFORMS          platforms to build, space-separated (default: this machine's, linux/$(go env GOARCH));
#                      e.g. "linux/amd64 linux/arm64"
#   VERSION            image tag and --version of the binary (default: git describe --tags --always --dirty)
#   REPOSITORY         default ghcr.io/layerset/layerset-csi
#   OUT                default _output/image
#   SOURCE_DATE_EPOCH  the image's timestamps (default: the last commit's time), so the digests are
#                      reproducible
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

PLATFORMS=${PLATFORMS:-linux/$(go env GOARCH)}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
REPOSITORY=${REPOSITORY:-ghcr.io/layerset/layerset-csi}
OUT=${OUT:-$ROOT/_output/image}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

args=()
for platform in $PLATFORMS; do
	IFS=/ read -r os arch variant <<<"$platform"
	[[ -n $os && -n $arch ]] || { echo "image.sh: platform '$platform' is not OS/ARCH[/VARIANT]" >&2; exit 1; }
	goarm=''
	[[ $arch != arm || -z $variant ]] || goarm=${variant#v}
	bin=$OUT/bin/$os-$arch${variant:+-$variant}/layerset-csi
	echo "image.sh: building $bin" >&2
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=$goarm go build -trimpath \
		-ldflags "-s -w -X github.com/layerset/layerset-csi/internal/version.override=$VERSION" \
		-o "$bin" ./cmd/layerset-csi
	args+=(--binary "$platform=$bin")
done

go run ./hack/image "${args[@]}" \
	--repository "$REPOSITORY" --version "$VERSION" --revision "$REVISION" \
	--created "$SOURCE_DATE_EPOCH" --out "$OUT"
echo "image.sh: $REPOSITORY:$VERSION ($PLATFORMS) in $OUT" >&2
