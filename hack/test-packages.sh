#!/usr/bin/env bash
# Installs the Debian packages the unit tests need, when any is missing
# (apt_install_missing, hack/lib.sh): a machine that has them all is not
# touched, so `make test` runs this every time.
#
#   user-mode-linux   the second kernel (Linux with CONFIG_QUOTA, run as a
#                     process) that internal/secondkernel boots for the
#                     project-quota tests: our build kernel has no quotas
#   kmod              insmod, for the second kernel's loop, quota and
#                     overlay modules
#   xfsprogs          mkfs.xfs, for the XFS filesystem made inside it
#   e2fsprogs         mkfs.ext4 -O project,quota, for the ext4 one
#   quota             setquota and repquota, to look at a guest by hand
#   util-linux        setpriv (a writer without CAP_SYS_RESOURCE, which
#                     would ignore ext4 limits)
#   mount             mount and losetup (Debian splits them from util-linux)
#   umoci             unpacks the images `layerset-csi commit` writes, as
#                     another tool than ours reads them (pkg/layers, cmd)
set -euo pipefail
LOG_TAG=test-packages
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install_missing user-mode-linux kmod xfsprogs e2fsprogs quota util-linux mount umoci
