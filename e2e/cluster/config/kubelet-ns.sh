#!/bin/sh
# Runs the kubelet in the mount namespace `unshare --mount --propagation
# unchanged` made for it, after three changes that only this namespace sees:
#  - every mount but the node's root (E2E node dir, shared with the host so
#    that the kubelet's volume mounts reach containerd) becomes private, so
#    nothing mounted below reaches the host;
#  - read-only files holding the values protectKernelDefaults checks cover
#    six /proc/sys files: the kubelet reads what it wants, and writes nothing;
#  - /var/log and /var/lib are the work dir's: the kubelet writes links to
#    container logs in /var/log/containers and its device plugin socket in
#    /var/lib/kubelet/device-plugins whatever its configuration says. Its
#    own root dir is elsewhere (NODE_ROOT), so it misses nothing there.
# usage: kubelet-ns.sh NODE_ROOT WORK_DIR KUBELET [ARGS...]
set -eu
node_root=$1 w=$2
shift 2
awk '{ print $5 }' /proc/self/mountinfo | sort -u | while read -r m; do
	case $m in "$node_root" | "$node_root"/*) continue ;; esac
	mount --make-private "$m" 2>/dev/null || true
done
mkdir -p "$w/kubelet/sysctl"
for kv in kernel/panic=10 kernel/panic_on_oops=1 vm/overcommit_memory=1 vm/panic_on_oom=0 \
	kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
	k=${kv%%=*} f=$w/kubelet/sysctl/$(echo "${kv%%=*}" | tr / _)
	echo "${kv#*=}" >"$f"
	mount --bind -o ro "$f" "/proc/sys/$k"
done
for d in log lib; do
	case $node_root/ in /var/$d/*) echo "kubelet-ns.sh: the node root $node_root must not be under /var/$d" >&2 && exit 1 ;; esac
	mkdir -p "$w/kubelet/var-$d"
	mount --bind "$w/kubelet/var-$d" "/var/$d"
done
exec "$@"
