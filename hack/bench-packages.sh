#!/usr/bin/env bash
# Installs the Debian packages the cold-start benchmark (make bench-cold,
# bench/cold/run.sh) needs, when any is missing (apt_install_missing,
# hack/lib.sh): a machine that has them all is not touched, so the benchmark
# runs this every time.
#
#   docker-registry   the registry on loopback the images are pulled from
#   skopeo            the naive contender's fetch (skopeo copy to an OCI layout)
#   tar gzip zstd     its extraction (GNU tar -xf of each layer), and the
#                     single-core decompression limits (gzip -d, zstd -d)
#   fio               the disk's sequential write limit
#   curl              the registry's health check
#   util-linux        mountpoint, findmnt (cleanup of leftover mounts)
#   mount             umount (Debian splits it from util-linux)
#
# Installing docker-registry may start its system service on a machine with
# systemd; the benchmark runs its own instance with its own storage and port,
# and never talks to that one.
set -euo pipefail
LOG_TAG=bench-packages
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install_missing docker-registry skopeo tar gzip zstd fio curl util-linux mount
