#!/usr/bin/env bash
# Tears down what up.sh made, whatever state it is in: a healthy cluster, a
# half-started one, or one whose processes died. Safe to run twice.
#
#  1. Pods go first while the kubelet and the CSI driver still run, so that
#     volumes are unmounted the way a user's would be: the pods of
#     everything but the driver, then the driver's.
#  2. Processes recorded in run/*.pid stop (SIGTERM, then SIGKILL); any
#     container left is killed through containerd, then through runc's state
#     in the work dir; shims serving this cluster's containerd, and only
#     those, are stopped.
#  3. Mounts under the work dir are lazily unmounted, deepest first; the
#     bridge and whatever veths are left on it are deleted, and the pods'
#     cgroups; what the stack created in HOST_PATHS (lib.sh) is removed.
#  4. The cluster's state is deleted; logs/ and cache/ stay.
#
# Exits non-zero when something could not be removed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root
T_DOWN=$EPOCHREALTIME
problems=()

# delete_pods SELECTOR TIMEOUT: deletes the pods SELECTOR picks in every
# namespace and waits until the kubelet has finished with them.
delete_pods() {
	kubectl_admin delete pods -A -l "$1" --grace-period=2 --wait=false >/dev/null 2>&1 || return 0
	local deadline=$((SECONDS + $2))
	while [[ -n $(kubectl_admin get pods -A -l "$1" -o name 2>/dev/null) ]]; do
		if ((SECONDS >= deadline)); then
			log "pods ($1) still there after $2s: continuing"
			return 0
		fi
		sleep 0.5
	done
}

drain() {
	pid_alive kube-apiserver && pid_alive kubelet || return 0
	# Without controllers nothing replaces the pods deleted below.
	stop kube-controller-manager kube-scheduler
	delete_pods 'app.kubernetes.io/part-of!=layerset-csi' 90
	delete_pods 'app.kubernetes.io/part-of=layerset-csi' 60
}

# containers kills every container still running: through containerd, then
# through runc for any containerd lost track of.
containers() {
	local id
	if [[ -S $CONTAINERD_SOCK ]] && pid_alive containerd; then
		for id in $(ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1
		done
		for id in $(ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1
		done
	fi
	if [[ -d $RUNC_ROOT/k8s.io ]]; then
		for id in $(runc --root "$RUNC_ROOT/k8s.io" list -q 2>/dev/null); do
			runc --root "$RUNC_ROOT/k8s.io" kill "$id" KILL >/dev/null 2>&1
			runc --root "$RUNC_ROOT/k8s.io" delete --force "$id" >/dev/null 2>&1
		done
	fi
}

# shims stops the runc shims serving this cluster's containerd socket and
# removes their sockets, which containerd 1.6+ keeps in /run/containerd/s
# named sha256(ADDRESS/NAMESPACE/ID).
shims() {
	local pid args ns id addr sum
	for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK( |$)"); do
		args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
		ns=$(sed -n 's/.*-namespace \([^ ]*\).*/\1/p' <<<"$args")
		id=$(sed -n 's/.*-id \([^ ]*\).*/\1/p' <<<"$args")
		addr=$(sed -n 's/.*-address \([^ ]*\).*/\1/p' <<<"$args")
		kill -9 "$pid" 2>/dev/null
		sum=$(printf '%s' "$addr/$ns/$id" | sha256sum | cut -d' ' -f1)
		rm -f "/run/containerd/s/$sum"
	done
}

unmount_all() {
	local m _ mounts
	# Mounts can be stacked on one path: one umount per line, until none
	# is left.
	for _ in 1 2 3 4 5 6 7 8; do
		mapfile -t mounts < <(mounts_under "$W")
		for m in "${mounts[@]}"; do
			umount -l "$m" 2>/dev/null
		done
		[[ -n $(mounts_under "$W") ]] || return 0
		sleep 0.2
	done
	problems+=("mounts left under $W: $(mounts_under "$W" | sort -u | tr '\n' ' ')")
}

network() {
	ip link show "$BRIDGE" >/dev/null 2>&1 || return 0
	# A pod's veth goes with its network namespace, which the kernel frees
	# shortly after the last reference (process or mount) is gone.
	local deadline=$((SECONDS + 10)) link
	while [[ -n $(ip -o link show master "$BRIDGE" 2>/dev/null) ]] && ((SECONDS < deadline)); do
		sleep 0.2
	done
	for link in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
		ip link del "$link" 2>/dev/null
	done
	ip link del "$BRIDGE" || problems+=("bridge $BRIDGE could not be deleted")
}

# host_paths removes what the stack created where it was absent before
# up.sh: CNI result files of this cluster's network, then directories left
# empty. Files of anyone else stay, and hoststate.sh reports them.
host_paths() {
	local p
	[[ -f $W/host/absent-paths ]] || return 0
	# libcni caches each sandbox's result per network, named
	# NETWORK-SANDBOX-IFNAME; a sandbox never torn down (containerd killed)
	# leaves its files.
	rm -f /var/lib/cni/results/layerset-e2e-* 2>/dev/null
	local sandbox
	for sandbox in "$W"/containerd/root/io.containerd.grpc.v1.cri/sandboxes/*; do
		[[ -e $sandbox ]] && rm -f /var/lib/cni/results/*-"${sandbox##*/}"-* 2>/dev/null
	done
	while read -r p; do
		[[ -d $p ]] && find "$p" -depth -type d -empty -delete 2>/dev/null
		[[ ! -e $p ]] || problems+=("$p did not exist before the cluster and is not empty now")
	done <"$W/host/absent-paths"
}

# cgroups removes the containers' parent cgroups where up.sh found none;
# they are empty once the containers are gone.
cgroups() {
	local d
	[[ -f $W/host/absent-cgroups ]] || return 0
	while read -r d; do
		[[ -d $d ]] || continue
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
		[[ ! -d $d ]] || problems+=("cgroup $d could not be removed: $(find "$d" -name cgroup.procs -exec cat {} + | wc -l) processes left")
	done <"$W/host/absent-cgroups"
}

state() {
	if [[ -n $(mounts_under "$W") ]]; then
		problems+=("cluster state in $W kept: it still has mounts")
		return
	fi
	rm -rf "$W"/{pki,etcd,containerd,cni,kubelet,node,registry,run,driver,cluster.env,kubeconfig} "$W"/*.kubeconfig "$W"/*.yaml
}

# Steps (hack/lib.sh) named - are not timed; none stops the teardown.
[[ -d $W ]] || exit 0
step "down: pods deleted" drain
stop kube-controller-manager kube-scheduler
stop kubelet
step - containers
stop containerd
shims
stop registry kube-apiserver etcd
step - unmount_all
step - network
cgroups
host_paths
state
timing "cluster down" "$T_DOWN"
if [[ ${#problems[@]} -gt 0 ]]; then
	printf '[e2e] teardown incomplete: %s\n' "${problems[@]}" >&2
	exit 1
fi
log "cluster down: nothing of it is left outside $W/logs and $W/cache"
