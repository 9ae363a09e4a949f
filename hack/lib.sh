# Shell helpers shared by hack/tools.sh and the e2e scripts (through e2e/cluster/lib.sh); sourced,
# never run.
#
# LOG_TAG is the tag of log lines, "[TAG HH:MM:SS] message" on stderr; set it before or after
# sourcing (default: the name of the script that sourced this file). TIMINGS, when set, names a
# file that every timing (and so every step) also appends "NAME SECONDS" to.
# shellcheck shell=bash

[[ -n ${HACK_LIB_LOADED:-} ]] && return 0
HACK_LIB_LOADED=1

LOG_TAG=${LOG_TAG:-$(basename "${BASH_SOURCE[1]:-$0}" .sh)}

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# seconds_since T0 [DIGITS] prints the seconds elapsed since the $EPOCHREALTIME value T0, with
# DIGITS decimals (default 2).
seconds_since() {
	awk -v a="${1/,/.}" -v b="${EPOCHREALTIME/,/.}" -v d="${2:-2}" 'BEGIN { printf "%.*f", d, b - a }'
}

# timing NAME T0 logs how long NAME took since T0 and records it in $TIMINGS, if set.
timing() {
	local s
	s=$(seconds_since "$2")
	log "$1: ${s}s"
	[[ -n ${TIMINGS:-} ]] || return 0
	mkdir -p "$(dirname "$TIMINGS")"
	printf '%-44s %8ss\n' "$1" "$s" >>"$TIMINGS"
}

# A step is logged when it starts and timed when it ends. step_begin NAME and step_end bracket
# plain commands, which keep `set -e` (bash ignores it inside `if f` and `f || ...`): with set -e a
# failure exits the script inside the step, and an EXIT trap that calls step_failed names it.
STEP='' STEP_T0=''
step_begin() { STEP=$1 STEP_T0=$EPOCHREALTIME; log "$STEP ..."; }
step_end() { timing "$STEP" "$STEP_T0"; STEP=''; }

# step_failed RC logs that the current step, if any, failed with exit status RC (an EXIT trap's
# $?; nothing when RC is 0), and ends it.
step_failed() {
	if [[ ${1:-1} -ne 0 && -n $STEP ]]; then
		log "FAILED: $STEP (after $(seconds_since "$STEP_T0" 1)s, exit ${1:-1})"
	fi
	STEP=''
}

# step NAME CMD... runs CMD as one step and returns its status: under set -e a failure exits the
# script (CMD runs as a plain command, so set -e holds inside it too); without, the step is
# logged as failed and the caller decides. NAME "-" runs CMD untimed and unlogged.
step() {
	local name=$1 rc
	shift
	if [[ $name == - ]]; then
		"$@"
		return
	fi
	step_begin "$name"
	"$@"
	rc=$?
	if ((rc == 0)); then
		step_end
	else
		step_failed "$rc"
	fi
	return "$rc"
}

# apt_install_missing PACKAGE... installs, as root, the Debian packages not yet installed: one
# `apt-get update`, one `apt-get install`, timed. A machine that has them all is not touched, so
# scripts call it before every run.
apt_install_missing() {
	local p t0 missing=()
	for p in "$@"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
	done
	[[ ${#missing[@]} -gt 0 ]] || return 0
	[[ $(id -u) -eq 0 ]] || die "missing Debian packages ${missing[*]}: install them, or run this as root"
	t0=$EPOCHREALTIME
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
	timing "apt-get install ${#missing[@]} packages" "$t0"
}
