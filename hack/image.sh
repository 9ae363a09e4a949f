#!/usr/bin/env bash
# Builds the layerset-csi image without a Docker engine: static binaries for each platform, then
# hack/image assembles what the Dockerfile would (see hack/image/main.go), with this machine's
# mkfs.ext4 (e2fsprogs) for the node plugin's fallback size limits. Output in OUT:
#   layerset-csi-linux-ARCH.tar   docker-archive, e.g. ctr -n k8s.io images import layerset-csi-linux-amd64.tar
#   oci/                          OCI image layout with the multi-platform index, e.g. crane push oci/ REF
#
# Environment (all optional):
#   PLATFORMS          platforms to build, space-separated (default: this machine's, linux/$(go env GOARCH)).
#                      The image ships this machine's mkfs.ext4, so only this machine's architecture
#                      can be built here; other platforms: docker buildx build --platform ... (Dockerfile)
#   VERSION            image tag and --version of the binary (default: git describe --tags --always --dirty)
#   REPOSITORY         default ghcr.io/layerset/layerset-csi
#   OUT                default _output/image
#   SOURCE_DATE_EPOCH  the image's timestamps (default: the last commit's time), so the digests are
#                      reproducible
set -euo pipefail

die() { echo "image.sh: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

PLATFORMS=${PLATFORMS:-linux/$(go env GOARCH)}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
REPOSITORY=${REPOSITORY:-ghcr.io/layerset/layerset-csi}
OUT=${OUT:-$ROOT/_output/image}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

# The node plugin formats a per-volume ext4 image with mkfs.ext4 where project quotas are missing.
# The image ships this machine's: mke2fs with its libraries and loader (hack/image finds them),
# mkfs.ext4 linking to it (mke2fs makes ext4 when called so), and its configuration. The
# Dockerfile passes the same --tool flags; hack/image's tests compare them.
mke2fs=$(PATH=/usr/sbin:/sbin:$PATH command -v mke2fs) || die "mke2fs not found: apt-get install e2fsprogs"
tools=(--tool "/usr/sbin/mke2fs=$mke2fs" --tool-link /usr/sbin/mkfs.ext4=mke2fs --tool-file /etc/mke2fs.conf)
host_arch=$(go env GOHOSTARCH)

# Every platform is checked before anything is built.
for platform in $PLATFORMS; do
	IFS=/ read -r os arch variant <<<"$platform"
	[[ -n $os && -n $arch ]] || die "platform '$platform' is not OS/ARCH[/VARIANT]"
	[[ $arch == "$host_arch" ]] || die "platform $platform: the image ships this machine's mkfs.ext4 ($host_arch)," \
		"so only linux/$host_arch can be built here; build $platform with the Dockerfile (docker buildx build --platform $platform .)"
done

args=()
for platform in $PLATFORMS; do
	IFS=/ read -r os arch variant <<<"$platform"
	goarm=''
	[[ $arch != arm || -z $variant ]] || goarm=${variant#v}
	bin=$OUT/bin/$os-$arch${variant:+-$variant}/layerset-csi
	echo "image.sh: building $bin" >&2
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=$goarm go build -trimpath \
		-ldflags "-s -w -X github.com/layerset/layerset-csi/internal/version.override=$VERSION" \
		-o "$bin" ./cmd/layerset-csi
	args+=(--binary "$platform=$bin")
done

go run ./hack/image "${args[@]}" "${tools[@]}" \
	--repository "$REPOSITORY" --version "$VERSION" --revision "$REVISION" \
	--created "$SOURCE_DATE_EPOCH" --out "$OUT"
echo "image.sh: $REPOSITORY:$VERSION ($PLATFORMS) in $OUT" >&2
