#!/usr/bin/env bash
# Installs the Debian packages an e2e node runs, when any is missing: one
# `apt-get update`, one `apt-get install`. A machine that has them all is not
# touched, so this is cheap to run before every cluster.
#
#   containerd runc containernetworking-plugins   the container runtime and CNI
#   busybox-static                                the userland of test pods
#   docker-registry                               the registry LayerSet images come from
#   iproute2 iptables openssl util-linux curl     ip, iptables-save (the host check), PKI, unshare, health checks
#
# Installing docker-registry (and containerd) may start their system services
# on a machine with systemd; the cluster runs its own instances with their own
# state, sockets and ports, and never talks to those.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(containerd runc containernetworking-plugins busybox-static docker-registry iproute2 iptables openssl
	util-linux curl)

need_root
apt_install_missing "${PACKAGES[@]}"
