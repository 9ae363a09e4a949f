# Shared settings and helpers of the e2e cluster scripts; sourced, never run.
# shellcheck shell=bash disable=SC2034 # the settings are for the scripts that source this
#
# Everything a cluster creates lives under E2E_DIR (default .cache/e2e in the
# repository, which git ignores), except what the kernel keeps elsewhere: the
# bridge E2E_BRIDGE with the pod gateway and the API server's service IP on
# it, the mounts under E2E_DIR and the processes recorded in E2E_DIR/run.
# down.sh removes all of it; hoststate.sh proves it did.
#
# Settings (environment, all optional):
#   E2E_DIR            work dir (default: REPO/.cache/e2e)
#   E2E_NODE_NAME      the node's name (default: e2e-node)
#   E2E_NODE_IP        the kubelet's address (default: the source address of
#                      the default route, else the pod gateway)
#   E2E_BRIDGE         CNI bridge (default: lse2e0)
#   E2E_POD_CIDR       pod subnet, a /24 (default: 10.244.0.0/24)
#   E2E_SERVICE_CIDR   service range (default: 10.96.0.0/16); the API server
#                      listens on its first address, port 443, which is what
#                      pods reach as the `kubernetes` Service: there is no
#                      kube-proxy, so no other Service IP works
#   E2E_REGISTRY_PORT  port of the image registry on the node IP (default: 25000)
#   E2E_PREPARED       set (by run.sh) when the tools and the Debian packages
#                      are in place: up.sh then skips installing them

[[ -n ${E2E_LIB_LOADED:-} ]] && return 0
E2E_LIB_LOADED=1

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
E2E_CLUSTER_DIR=$E2E_ROOT/e2e/cluster
W=${E2E_DIR:-$E2E_ROOT/.cache/e2e}

NODE_NAME=${E2E_NODE_NAME:-e2e-node}
BRIDGE=${E2E_BRIDGE:-lse2e0}
POD_CIDR=${E2E_POD_CIDR:-10.244.0.0/24}
POD_GW=${POD_CIDR%.*}.1
SERVICE_CIDR=${E2E_SERVICE_CIDR:-10.96.0.0/16}
API_IP=${SERVICE_CIDR%.*}.1
API_PORT=443
ETCD_PORT=23379 ETCD_PEER_PORT=23380
KUBELET_PORT=20250 KUBELET_HEALTHZ_PORT=20248
KCM_PORT=20257 SCHEDULER_PORT=20259
REGISTRY_PORT=${E2E_REGISTRY_PORT:-25000}

# The node's file system: one rshared bind mount, so that mounts made below it
# in the kubelet's mount namespace (secrets, service-account tokens) and in
# the node plugin's container (CSI volumes) reach every other namespace, as
# on a node where / is shared.
NODE_ROOT=$W/node
KUBELET_DIR=$NODE_ROOT/kubelet
STORE_DIR=$NODE_ROOT/layerset

CONTAINERD_SOCK=$W/containerd/run/containerd.sock
RUNC_ROOT=$W/containerd/runc
KUBECONFIG_ADMIN=$W/kubeconfig
CLUSTER_ENV=$W/cluster.env
TIMINGS=$W/logs/timings.txt

# The cgroup containerd puts containers in, in every hierarchy: its
# namespace. up.sh records where it was absent; down.sh removes it there.
CGROUP_PARENT=k8s.io

PAUSE_IMAGE=localhost/e2e/pause:1
BUSYBOX_IMAGE=localhost/e2e/busybox:1

# Host paths a node's stack writes to whatever it is told: containerd's CNI
# result cache (/var/lib/cni), shim sockets (/run/containerd/s), and paths
# kubelets and drivers use by default. up.sh records which exist; down.sh
# removes those that did not; hoststate.sh lists them.
HOST_PATHS=(/var/lib/cni /run/containerd /var/lib/containerd /var/lib/kubelet /var/log/pods
	/var/log/containers /etc/cni /opt/cni /etc/kubernetes /var/lib/layerset /run/netns /var/run/netns)

# Binaries from hack/tools.sh; without E2E_TOOLS_DIR ask it where they are
# (it only prints, builds happen in up.sh and run.sh).
BIN=${E2E_TOOLS_DIR:-$E2E_ROOT/.cache/bin}
KUBECTL=$BIN/kubectl

# go may be installed where our build machines keep it, outside PATH.
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin

# log, die, seconds_since, timing (which records in $TIMINGS) and step: hack/lib.sh.
LOG_TAG=e2e
# shellcheck source=hack/lib.sh
source "$E2E_ROOT/hack/lib.sh"

need_root() {
	[[ $(id -u) -eq 0 ]] || die "the e2e cluster mounts file systems and creates a bridge: run as root"
}

node_ip() {
	if [[ -n ${E2E_NODE_IP:-} ]]; then
		echo "$E2E_NODE_IP"
		return
	fi
	local ip
	ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
	# The kubelet refuses a loopback node IP; without a default route the
	# bridge's address is the node's.
	echo "${ip:-$POD_GW}"
}

# proc_start PID prints the process's start time (clock ticks after boot),
# which tells it apart from a later process given the same PID; it fails for
# a process that is gone or a zombie nobody reaped.
proc_start() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]] || return 1
	cut -d' ' -f20 <<<"$stat"
}

# recorded_pid NAME prints the PID in run/NAME.pid if that process still runs.
recorded_pid() {
	local f=$W/run/$1.pid pid started
	[[ -f $f ]] || return 1
	read -r pid started <"$f"
	[[ -n $pid && $(proc_start "$pid") == "$started" ]] || return 1
	echo "$pid"
}

pid_alive() { recorded_pid "$1" >/dev/null; }

# cluster_exists prints why the work dir or the host still has a cluster:
# a process of it running, a mount under the work dir, or the bridge.
cluster_exists() {
	local name
	for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet containerd registry; do
		if pid_alive "$name"; then
			echo "$name of a cluster in $W is running"
			return 0
		fi
	done
	if [[ -n $(mounts_under "$W") ]]; then
		echo "mounts are left under $W"
		return 0
	fi
	if ip link show "$BRIDGE" >/dev/null 2>&1; then
		echo "bridge $BRIDGE exists"
		return 0
	fi
	return 1
}

# start NAME CMD...: runs CMD in the background with its output in
# logs/NAME.log and its PID in run/NAME.pid.
start() {
	local name=$1
	shift
	mkdir -p "$W/run" "$W/logs"
	"$@" >"$W/logs/$name.log" 2>&1 &
	echo "$! $(proc_start $!)" >"$W/run/$name.pid"
}

# stop NAME...: SIGTERMs the recorded processes together, SIGKILLs those
# still running after 10 s.
stop() {
	local name pid i t0=$EPOCHREALTIME
	local -A pids=()
	for name in "$@"; do
		pid=$(recorded_pid "$name") && kill "$pid" 2>/dev/null && pids[$name]=$pid
		rm -f "$W/run/$name.pid"
	done
	((${#pids[@]} > 0)) || return 0
	local signalled=${!pids[*]}
	for ((i = 0; i < 100 && ${#pids[@]} > 0; i++)); do
		for name in "${!pids[@]}"; do
			kill -0 "${pids[$name]}" 2>/dev/null || unset "pids[$name]"
		done
		((${#pids[@]} == 0)) || sleep 0.1
	done
	for name in "${!pids[@]}"; do
		log "$name (pid ${pids[$name]}) ignored SIGTERM for 10s: SIGKILL"
		kill -9 "${pids[$name]}" 2>/dev/null
	done
	log "stopped $signalled in $(seconds_since "$t0")s"
}

# wait_for WHAT TIMEOUT_S NAME CMD...: runs CMD every 0.2 s until it succeeds;
# fails with the tail of logs/NAME.log when the process NAME dies or after
# TIMEOUT_S seconds.
wait_for() {
	local what=$1 timeout=$2 name=$3 deadline
	shift 3
	deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if [[ -n $name ]] && ! pid_alive "$name"; then
			tail -n 30 "$W/logs/$name.log" >&2 || true
			die "$name exited while waiting for $what (log: $W/logs/$name.log)"
		fi
		if ((SECONDS >= deadline)); then
			[[ -z $name ]] || tail -n 30 "$W/logs/$name.log" >&2 || true
			die "$what: not after ${timeout}s${name:+ (log: $W/logs/$name.log)}"
		fi
		sleep 0.2
	done
}

# render TEMPLATE OUT: copies TEMPLATE with every @NAME@ replaced by $NAME.
render() {
	local content var
	content=$(<"$1")
	for var in W NODE_NAME NODE_IP BRIDGE POD_CIDR POD_GW SERVICE_CIDR API_IP API_PORT KUBELET_DIR \
		KUBELET_PORT KUBELET_HEALTHZ_PORT CONTAINERD_SOCK RUNC_ROOT PAUSE_IMAGE REGISTRY_PORT STORE_DIR; do
		content=${content//@$var@/${!var:-}}
	done
	[[ $content != *@[A-Z_]*@* ]] || die "$1: unknown placeholder in $(grep -o '@[A-Z_]*@' <<<"$content" | sort -u | tr '\n' ' ')"
	printf '%s\n' "$content" >"$2"
}

kubectl_admin() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# mounts_under DIR prints the mount points at or below DIR, deepest first,
# a path once for each mount stacked on it.
mounts_under() {
	awk -v d="$1" '{ t = $5; gsub(/\\040/, " ", t); if (t == d || index(t, d "/") == 1) print t }' /proc/self/mountinfo |
		sort -r
}
