# syntax=docker/dockerfile:1
# The layerset-csi image: one static binary on an empty base, and Debian's mkfs.ext4 with the
# libraries it needs for the node plugin's fallback size limits. Multi-platform:
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) \
#     -t ghcr.io/layerset/layerset-csi:v0.1.0 .
# Without a Docker engine, `make image` (hack/image.sh) assembles the same image with
# go-containerregistry; hack/image's tests keep the two in step.

ARG GO_VERSION=1.26
ARG DEBIAN=debian:bookworm-slim

# e2fsprogs of the target platform: the node plugin formats a per-volume ext4 image with
# mkfs.ext4 where project quotas are missing. Nothing runs from this stage; the build stage reads
# its files. apt-get is the one step a cross-platform build emulates.
FROM ${DEBIAN} AS e2fsprogs
RUN apt-get update && apt-get install -y --no-install-recommends e2fsprogs && rm -rf /var/lib/apt/lists/*

# The build stage runs on the builder's own platform and cross-compiles for
# TARGETARCH: pure Go, so no emulation and no C toolchain.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=devel
ARG SOURCE_DATE_EPOCH=0
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# Only what the binary is built from: no .cache/, _output/ or .git in the context.
COPY cmd/ cmd/
COPY internal/ internal/
COPY pkg/ pkg/
COPY hack/image/ hack/image/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X github.com/layerset/layerset-csi/internal/version.override=${VERSION}" \
      -o /out/layerset-csi ./cmd/layerset-csi
# The tools layer of the target platform, from its Debian root, by the code hack/image.sh's image
# is built with (hack/image --stage): mke2fs, the libraries it needs (DT_NEEDED) at the paths the
# loader searches, the loader, mkfs.ext4 linking to mke2fs, mke2fs.conf. Run natively: it only
# reads ELF headers.
RUN --mount=type=bind,from=e2fsprogs,target=/sysroot \
    --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go run ./hack/image --stage /out/tools --arch "$TARGETARCH" --sysroot /sysroot --created "$SOURCE_DATE_EPOCH" \
      --tool /usr/sbin/mke2fs --tool-link /usr/sbin/mkfs.ext4=mke2fs --tool-file /etc/mke2fs.conf

# scratch: the binary, the CA certificates registries are verified with, and mkfs.ext4.
# No shell, no package manager, no user database: nothing to patch but us and e2fsprogs.
FROM scratch
ARG VERSION=devel
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="layerset-csi" \
      org.opencontainers.image.description="CSI driver composing pod volumes from shared, cached read-only OCI image layers with overlayfs" \
      org.opencontainers.image.source="https://github.com/layerset/layerset-csi" \
      org.opencontainers.image.url="https://github.com/layerset/layerset-csi" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# Debian's search path: the node plugin finds mkfs.ext4 by name.
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
# The tools first: their layer changes with Debian's packages, not with every build.
COPY --from=build /out/tools/ /
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/layerset-csi /layerset-csi
# No USER: the node plugin mounts, so it runs as root (privileged); the chart
# runs the controller, which does not, as UID 65532 on a read-only root.
ENTRYPOINT ["/layerset-csi"]
