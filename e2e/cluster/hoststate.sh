#!/usr/bin/env bash
# Records, and compares, the host state a Kubernetes node could change and a
# build machine must get back unchanged: kernel parameters, packet filter
# rules, the mount table, network links and namespaces, cgroups, and the
# host paths of lib.sh.
#
#   hoststate.sh snapshot FILE
#   hoststate.sh compare BEFORE AFTER   prints every difference, exits 1 on any
#
# Values the kernel changes on its own (counters, entropy, the last PID) are
# left out. E2E_HOSTCHECK_IGNORE, an extended regular expression, leaves out
# more lines, for machines where other work mounts things at the same time.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VOLATILE_SYSCTLS='^(fs\.(dentry-state|file-nr|inode-nr|inode-state|aio-nr|quota\.)|kernel\.(ns_last_pid|random\.|pty\.nr|perf_event_max_sample_rate|sched_domain)|net\.netfilter\.nf_conntrack_count|vm\.stat)'

section() { printf '### %s\n' "$1"; }

snapshot() {
	section sysctl
	sysctl -a 2>/dev/null | grep -Ev "$VOLATILE_SYSCTLS" | sort
	section iptables
	local save
	for save in iptables-save ip6tables-save iptables-legacy-save ip6tables-legacy-save; do
		command -v "$save" >/dev/null || continue
		echo "# $save"
		# Packet and byte counters move with traffic.
		"$save" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]$//'
	done
	if command -v nft >/dev/null; then
		echo "# nft"
		nft list ruleset 2>/dev/null
	fi
	section mounts
	awk '{ sep = 0; for (i = 7; $i != "-"; i++); print $5, $(i + 1), $(i + 2) }' /proc/self/mountinfo | sort
	section links
	ip -o link show | awk -F': ' '{ print $2 }' | cut -d@ -f1 | sort
	section addresses
	ip -o addr show | awk '{ print $2, $3, $4 }' | sort
	section netns
	ip netns list 2>/dev/null | awk '{ print $1 }' | sort
	section cgroups
	# Containers' cgroups sit in a parent one in each hierarchy (cgroup v1)
	# or in the one (v2): a leftover container leaves its parent.
	find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d 2>/dev/null |
		grep -Ev '\.(slice|scope|service|mount|socket|swap)(/|$)' | sort
	section paths
	local p
	for p in "${HOST_PATHS[@]}"; do
		[[ -e $p || -L $p ]] || continue
		find "$p" -maxdepth 3 2>/dev/null | sort
	done
}

compare() {
	local before=$1 after=$2 out
	if [[ -n ${E2E_HOSTCHECK_IGNORE:-} ]]; then
		out=$(diff <(grep -Ev "$E2E_HOSTCHECK_IGNORE" "$before") <(grep -Ev "$E2E_HOSTCHECK_IGNORE" "$after"))
	else
		out=$(diff "$before" "$after")
	fi
	if [[ -n $out ]]; then
		echo "HOST STATE CHANGED ('<' before the cluster, '>' after it was torn down):" >&2
		# Name the section of each difference.
		diff --unchanged-line-format='' --old-line-format='< %L' --new-line-format='> %L' "$before" "$after" |
			head -n 200 >&2
		awk '/^### /{ s = $2 } { print s "\t" $0 }' "$before" >"$before.sections"
		awk '/^### /{ s = $2 } { print s "\t" $0 }' "$after" >"$after.sections"
		echo "changed sections: $(diff "$before.sections" "$after.sections" | sed -n 's/^[<>] \([a-z]*\)\t.*/\1/p' | sort -u | tr '\n' ' ')" >&2
		return 1
	fi
	echo "host state unchanged: sysctl, iptables, mounts, links, addresses, netns, cgroups, paths" >&2
}

case ${1:-} in
snapshot)
	[[ $# -eq 2 ]] || die "usage: hoststate.sh snapshot FILE"
	need_root
	mkdir -p "$(dirname "$2")"
	snapshot >"$2.tmp" && mv "$2.tmp" "$2"
	;;
compare)
	[[ $# -eq 3 ]] || die "usage: hoststate.sh compare BEFORE AFTER"
	compare "$2" "$3"
	;;
*) die "usage: hoststate.sh snapshot FILE | compare BEFORE AFTER" ;;
esac
