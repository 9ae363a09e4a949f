# syntax=docker/dockerfile:1
# The layerset-csi image: one static binary on an empty base. Multi-platform:
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) \
#     -t ghcr.io/layerset/layerset-csi:v0.1.0 .
# Without a Docker engine, `make image` (hack/image.sh) assembles the same image with
# go-containerregistry; hack/image's tests keep the two in step.

ARG GO_VERSION=1.26

# The build stage runs on the builder's own platform and cross-compiles for
# TARGETARCH: pure Go, so no emulation and no C toolchain.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=devel
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# Only what the binary is built from: no .cache/, _output/ or .git in the context.
COPY cmd/ cmd/
COPY internal/ internal/
COPY pkg/ pkg/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X github.com/layerset/layerset-csi/internal/version.override=${VERSION}" \
      -o /out/layerset-csi ./cmd/layerset-csi

# scratch: the binary and the CA certificates registries are verified with.
# No shell, no package manager, no user database: nothing to patch but us.
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
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/layerset-csi /layerset-csi
# No USER: the node plugin mounts, so it runs as root (privileged); the chart
# runs the controller, which does not, as UID 65532 on a read-only root.
ENTRYPOINT ["/layerset-csi"]
