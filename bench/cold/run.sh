#!/usr/bin/env bash
# The cold-start benchmark (make bench-cold; issue 13): how long a node takes
# from nothing to a usable tree of a ~2 GiB image of 8 layers (bench/cold/gen:
# 1.2 GiB of model weights in one layer, 50,000 small files in another, the
# rest mixed), pulled from a real registry on loopback (Debian's
# docker-registry), in a gzip and a zstd variant. Contenders, each from a cold
# page cache (sync; echo 3 >/proc/sys/vm/drop_caches before every timed run):
#
#   ours-pull    layerset-csi layers pull into a fresh --root
#   ours-mount   layerset-csi mount of a LayerSet naming the image, fresh --root:
#                the time until the volume is mounted (the first pod's wait)
#   containerd   ctr image pull --plain-http against a private containerd 2
#                (hack/tools.sh containerd2) with its own root: fetch, then
#                unpack into its overlayfs snapshotter, its defaults otherwise
#   skopeo-tar   the naive script: skopeo copy to an OCI layout, then GNU tar -xf
#                of each layer into one directory, one after the other
#
# and the limits a puller cannot beat on this machine:
#
#   decomp       single-core decompression, gzip -dc or zstd -dc >/dev/null of
#                each layer's blob, read from the page cache (the CPU's part
#                alone); the figure is the slowest layer, which no puller can
#                split across cores
#   disk         writing the same bytes and files: fio, one sequential writer of
#                every regular file's bytes outside the small-file layer, ended
#                by fsync; plus GNU tar -xf of that layer as a plain, uncompressed
#                tar (read from the page cache), ended by syncfs. The small
#                files are written as files, not as one stream: their cost is
#                creating 50,000 inodes and directory entries, which a
#                sequential fio job would not measure and fio's many-file jobs
#                lay out before they time. Every puller has to do at least what
#                tar does per file (open, write, close, chmod, chown, utimes);
#                one writer is the baseline, not a ceiling a parallel writer
#                cannot pass.
#
# and, for reference (not a limit of the goal), fetch: every blob of the image
# with curl to /dev/null, all at once: what the registry, reading them from a
# cold disk, and loopback deliver.
#
# The binding limit is max(decomp, disk). Runs alternate: run 1 of every
# contender of a variant, then the other variant, then run 2..., the order of
# the contenders rotated each run. The table shows medians, and
# ours/containerd and ours/limit from ours-pull (ours-mount's in the details).
# The goal: ours <= 0.5x containerd and <= 1.1x the binding limit, both variants.
#
# Durability differs: our pull syncfs()es each layer before it counts as
# stored; containerd does not sync by default (ctr's --sync-fs), nor does tar.
#
# Environment:
#   BENCH_RUNS           runs of each contender per variant (default 3); the median is shown
#   BENCH_SCALE          size factor of the image (default 1: ~2 GiB, 50,000 small files;
#                        0.1 for a quick try)
#   BENCH_VARIANTS       default "gzip zstd"
#   BENCH_CONTENDERS     default "ours-pull ours-mount containerd skopeo-tar fetch decomp disk"
#   BENCH_REGISTRY_PORT  loopback port of the registry (default 25100)
#   BENCH_RESULT         where the table also goes (default .cache/bench-cold/result.txt)
#
# Needs root (mounts, drop_caches). The images are generated once per
# generator version and scale into .cache/bench-cold/images/; everything else
# (the registry's storage, every contender's tree, containerd's root) lives in
# a work dir .cache/bench-cold/work.*, on the repository's filesystem, removed
# on exit with every mount and process the benchmark made.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
LOG_TAG=bench-cold
# shellcheck source=hack/lib.sh
source "$ROOT/hack/lib.sh"

RUNS=${BENCH_RUNS:-3}
SCALE=${BENCH_SCALE:-1}
read -r -a VARIANTS <<<"${BENCH_VARIANTS:-gzip zstd}"
read -r -a CONTENDERS <<<"${BENCH_CONTENDERS:-ours-pull ours-mount containerd skopeo-tar fetch decomp disk}"
PORT=${BENCH_REGISTRY_PORT:-25100}
CACHE=$ROOT/.cache/bench-cold
RESULT=${BENCH_RESULT:-$CACHE/result.txt}
REG=127.0.0.1:$PORT
REPO=bench/cold
LS='' # our binary, built into the work dir (see prepare)

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS=$RUNS: want a positive integer"
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || die "BENCH_SCALE=$SCALE: want a number such as 1 or 0.25"
[[ $PORT =~ ^[0-9]+$ ]] || die "BENCH_REGISTRY_PORT=$PORT: want a port number"
for v in "${VARIANTS[@]}"; do
	[[ $v == gzip || $v == zstd ]] || die "BENCH_VARIANTS: unknown variant $v (gzip, zstd)"
done
for c in "${CONTENDERS[@]}"; do
	[[ " ours-pull ours-mount containerd skopeo-tar fetch decomp disk " == *" $c "* ]] ||
		die "BENCH_CONTENDERS: unknown contender $c"
done
[[ $(id -u) -eq 0 ]] || die "the benchmark mounts overlayfs and drops the page cache: run it as root"

WORK='' REGISTRY_PID='' CONTAINERD_PID='' OUT='' LS_REV='' LOAD_START=''

# unmount_below DIR unmounts every mount at or below DIR, deepest first.
unmount_below() {
	local m
	findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" || log "cannot unmount $m"
	done
}

# stop_pid PID stops a process we started and waits for it; SIGKILL after 10s.
stop_pid() {
	local pid=$1 i
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		# Exited is a zombie until waited for, and kill -0 still finds it.
		[[ $(ps -o stat= -p "$pid" 2>/dev/null) == [^Z]* ]] || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

on_exit() {
	local rc=$?
	step_failed "$rc"
	[[ -z $CONTAINERD_PID ]] || stop_pid "$CONTAINERD_PID"
	[[ -z $REGISTRY_PID ]] || stop_pid "$REGISTRY_PID"
	if [[ -n $WORK && -d $WORK ]]; then
		unmount_below "$WORK"
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# A fresh tree of many files goes before the next run starts, and so does its writeback: neither
# may land in another contender's time.
remove() {
	rm -rf "$@"
	sync
}

# --- setup ------------------------------------------------------------------

prepare() {
	mkdir -p "$CACHE"
	# Two benchmarks at once would measure each other.
	exec 8>"$CACHE/lock"
	flock -n 8 || die "another bench-cold is running (lock $CACHE/lock)"
	# Holding the lock, any work dir left is from a run that was killed.
	local old
	for old in "$CACHE"/work.*; do
		[[ -d $old ]] || continue
		unmount_below "$old"
		rm -rf "$old"
	done

	step "packages" bash "$ROOT/hack/bench-packages.sh"
	step "containerd 2" bash "$ROOT/hack/tools.sh" containerd2
	TOOLS_BIN=$(bash "$ROOT/hack/tools.sh" --print-dir)
	step_begin "building the generator"
	(cd "$ROOT" && CGO_ENABLED=0 nice go build -o "$CACHE/gen" ./bench/cold/gen)
	step_end
	step_begin "images (scale $SCALE; generated once per generator version and scale)"
	IMG=$(nice "$CACHE/gen" write --cache "$CACHE/images" --scale "$SCALE")
	step_end

	WORK=$(mktemp -d "$CACHE/work.XXXXXX")
	mkdir -p "$WORK/layersets"
	# make build, into the work dir rather than bin/: the working tree is shared, and another
	# make build replacing bin/layerset-csi mid-benchmark would mix two binaries in one table.
	LS=$WORK/layerset-csi
	LS_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
	step "make build" nice make -s -C "$ROOT" build BIN="$LS"
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
}

# read_layers loads the generator's layers.tsv: per layer its name, blobs and sizes.
declare -a L_NAME L_DIFF L_FILE_BYTES L_FILES L_GZIP L_ZSTD
read_layers() {
	local idx name diff fileb files gz zs
	while IFS=$'\t' read -r idx name diff _ fileb files _ gz _ zs _; do
		[[ $idx == index ]] && continue
		L_NAME+=("$name") L_DIFF+=("$diff") L_FILE_BYTES+=("$fileb") L_FILES+=("$files")
		L_GZIP+=("${gz#sha256:}") L_ZSTD+=("${zs#sha256:}")
	done <"$IMG/layers.tsv"
	[[ ${#L_NAME[@]} -gt 0 ]] || die "$IMG/layers.tsv lists no layers"
	SMALL=-1
	local i
	for i in "${!L_NAME[@]}"; do
		[[ ${L_NAME[$i]} == site-packages ]] && SMALL=$i
	done
	((SMALL >= 0)) || die "$IMG/layers.tsv has no site-packages layer"
}

blob() { # blob VARIANT INDEX: the layer's blob in the generated layout
	local hex
	if [[ $1 == gzip ]]; then hex=${L_GZIP[$2]}; else hex=${L_ZSTD[$2]}; fi
	echo "$IMG/oci/blobs/sha256/$hex"
}

registry_up() {
	if curl -s -o /dev/null --max-time 2 "http://$REG/v2/"; then
		die "something already listens on $REG: set BENCH_REGISTRY_PORT"
	fi
	cat >"$WORK/registry.yaml" <<-EOF
		version: 0.1
		log:
		  level: warn
		  formatter: text
		  accesslog:
		    disabled: true
		storage:
		  filesystem:
		    rootdirectory: $WORK/registry
		  delete:
		    enabled: true
		  maintenance:
		    uploadpurging:
		      enabled: false
		http:
		  addr: $REG
		health:
		  storagedriver:
		    enabled: false
	EOF
	docker-registry serve "$WORK/registry.yaml" >"$WORK/registry.log" 2>&1 &
	REGISTRY_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		curl -sf -o /dev/null --max-time 2 "http://$REG/v2/" && return 0
		kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$WORK/registry.log" >&2; die "docker-registry exited"; }
		sleep 0.1
	done
	die "docker-registry not ready on $REG after 10s"
}

push() {
	"$CACHE/gen" push --layout "$IMG/oci" --registry "$REG" --repo "$REPO" >"$WORK/pushed.tsv"
	local v
	for v in "${VARIANTS[@]}"; do
		grep -q "^$v"$'\t' "$WORK/pushed.tsv" || die "push did not report tag $v"
		cat >"$WORK/layersets/bench-cold-$v.yaml" <<-EOF
			apiVersion: layerset.io/v1alpha1
			kind: LayerSet
			metadata: {name: bench-cold-$v}
			spec:
			  layers:
			    - image: $REG/$REPO:$v
		EOF
	done
}

# The small-file layer as a plain tar, for the disk limit's file-create run.
small_tar() {
	zstd -dcq "$(blob zstd "$SMALL")" >"$WORK/small.tar"
}

# --- the contenders -----------------------------------------------------------
# Each sets OUT to its seconds and, after a tab, a detail (run in this shell, not in $(...), so
# that what they start is in reach of the EXIT trap); logs go to $WORK.

TIMED=''
start_clock() { TIMED=$EPOCHREALTIME; }
clock() { seconds_since "$TIMED" 3; }

run_ours-pull() {
	local v=$1 root=$WORK/ours s n
	drop_caches
	start_clock
	# -v=2: each layer's import is logged with its duration (the details under the table).
	"$LS" layers pull -v=2 --root "$root" --insecure-registry "$REG" "$REG/$REPO:$v" >"$WORK/ours-pull.log" 2>&1 ||
		{ cat "$WORK/ours-pull.log" >&2; die "layerset-csi layers pull failed"; }
	s=$(clock)
	cp "$WORK/ours-pull.log" "$WORK/ours-pull-$v.last.log"
	n=$("$LS" layers ls --root "$root" 2>>"$WORK/ours-pull.log" | tail -n +2 | wc -l)
	[[ $n -eq ${#L_NAME[@]} ]] || die "layerset-csi layers pull stored $n layers, want ${#L_NAME[@]}"
	remove "$root"
	OUT=$s
}

run_ours-mount() {
	local v=$1 root=$WORK/ours-m target=$WORK/mnt s
	mkdir -p "$target"
	drop_caches
	start_clock
	"$LS" mount --root "$root" --insecure-registry "$REG" --layerset "$WORK/layersets/bench-cold-$v.yaml" "$target" \
		>"$WORK/ours-mount.log" 2>&1 || { cat "$WORK/ours-mount.log" >&2; die "layerset-csi mount failed"; }
	s=$(clock)
	mountpoint -q "$target" || die "layerset-csi mount returned, but nothing is mounted at $target"
	[[ -f $target/etc/bench-cold-release ]] || die "the volume at $target lacks the image's etc/bench-cold-release"
	"$LS" unmount --root "$root" "$target" >>"$WORK/ours-mount.log" 2>&1 ||
		{ cat "$WORK/ours-mount.log" >&2; die "layerset-csi unmount failed"; }
	remove "$root" "$target"
	OUT=$s
}

containerd_up() {
	local d=$1 i
	mkdir -p "$d"
	# Only what pulling needs: no CRI, no NRI, nothing under /opt, /run or /etc of the host.
	cat >"$d/config.toml" <<-EOF
		version = 3
		root = "$d/root"
		state = "$d/state"
		imports = []
		disabled_plugins = [
		  "io.containerd.grpc.v1.cri",
		  "io.containerd.cri.v1.images",
		  "io.containerd.cri.v1.runtime",
		  "io.containerd.podsandbox.controller.v1.podsandbox",
		  "io.containerd.nri.v1.nri",
		  "io.containerd.internal.v1.opt",
		  "io.containerd.image-verifier.v1.bindir",
		]
		[grpc]
		  address = "$d/c.sock"
		[ttrpc]
		  address = "$d/c.sock.ttrpc"
		[debug]
		  address = ""
		[metrics]
		  address = ""
	EOF
	"$TOOLS_BIN/containerd2" --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
	CONTAINERD_PID=$!
	for ((i = 0; i < 100; i++)); do
		"$TOOLS_BIN/ctr2" -a "$d/c.sock" version >/dev/null 2>&1 && return 0
		kill -0 "$CONTAINERD_PID" 2>/dev/null || { cat "$d/containerd.log" >&2; die "containerd exited"; }
		sleep 0.1
	done
	cat "$d/containerd.log" >&2
	die "containerd not ready after 10s"
}

run_containerd() {
	local v=$1 d=$WORK/containerd s n
	containerd_up "$d"
	drop_caches
	start_clock
	"$TOOLS_BIN/ctr2" -a "$d/c.sock" image pull --plain-http "$REG/$REPO:$v" >"$WORK/ctr-pull.log" 2>&1 ||
		{ cat "$WORK/ctr-pull.log" "$d/containerd.log" >&2; die "ctr image pull failed"; }
	s=$(clock)
	n=$("$TOOLS_BIN/ctr2" -a "$d/c.sock" snapshots ls 2>>"$WORK/ctr-pull.log" | tail -n +2 | grep -c Committed || true)
	[[ $n -eq ${#L_NAME[@]} ]] || die "containerd committed $n snapshots, want ${#L_NAME[@]}"
	stop_pid "$CONTAINERD_PID"
	CONTAINERD_PID=''
	unmount_below "$d"
	remove "$d"
	OUT=$s
}

run_skopeo-tar() {
	local v=$1 d=$WORK/skopeo s i hex
	local -a z
	if [[ $v == gzip ]]; then z=(-z); else z=(--zstd); fi
	mkdir -p "$d/rootfs"
	drop_caches
	start_clock
	skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$REG/$REPO:$v" "oci:$d/layout:img" \
		>"$WORK/skopeo.log" 2>&1 || { cat "$WORK/skopeo.log" >&2; die "skopeo copy failed"; }
	# skopeo keeps the blobs as they are, so the layers are the generator's, in its order.
	for i in "${!L_NAME[@]}"; do
		if [[ $v == gzip ]]; then hex=${L_GZIP[$i]}; else hex=${L_ZSTD[$i]}; fi
		tar "${z[@]}" -xf "$d/layout/blobs/sha256/$hex" -C "$d/rootfs"
	done
	s=$(clock)
	[[ -f $d/rootfs/etc/bench-cold-release ]] || die "skopeo+tar's tree lacks etc/bench-cold-release"
	remove "$d"
	OUT=$s
}

run_fetch() {
	local v=$1 i
	local -a args=()
	for i in "${!L_NAME[@]}"; do
		args+=(-o /dev/null "http://$REG/v2/$REPO/blobs/sha256:$(basename "$(blob "$v" "$i")")")
	done
	drop_caches
	start_clock
	curl -sSf --no-progress-meter --parallel --parallel-max 8 "${args[@]}" 2>>"$WORK/fetch.log" ||
		{ cat "$WORK/fetch.log" >&2; die "curl of the blobs failed"; }
	OUT=$(clock)
}

run_decomp() {
	local v=$1 i b s worst=0 worst_name=''
	local -a cmd
	if [[ $v == gzip ]]; then cmd=(gzip -dc); else cmd=(zstd -dcq); fi
	drop_caches
	for i in "${!L_NAME[@]}"; do
		b=$(blob "$v" "$i")
		cat "$b" >/dev/null
		start_clock
		"${cmd[@]}" "$b" >/dev/null
		s=$(clock)
		if awk -v a="$s" -v b="$worst" 'BEGIN { exit !(a > b) }'; then
			worst=$s worst_name=${L_NAME[$i]}
		fi
	done
	OUT=$worst$'\t'$worst_name
}

run_disk() {
	local d=$WORK/disk bytes=0 i s_seq s_small
	for i in "${!L_NAME[@]}"; do
		((i == SMALL)) || bytes=$((bytes + L_FILE_BYTES[i]))
	done
	bytes=$((bytes / 1048576 * 1048576))
	mkdir -p "$d/small"
	drop_caches
	cat "$WORK/small.tar" >/dev/null
	start_clock
	fio --name=seq --filename="$d/seq.dat" --rw=write --bs=1M --size="$bytes" --ioengine=psync \
		--fallocate=none --end_fsync=1 --output="$WORK/fio.log" >/dev/null
	s_seq=$(clock)
	start_clock
	tar -xf "$WORK/small.tar" -C "$d/small"
	sync -f "$d/small"
	s_small=$(clock)
	remove "$d"
	OUT=$(awk -v a="$s_seq" -v b="$s_small" 'BEGIN { printf "%.3f", a + b }')$'\t'$s_seq+$s_small
}

# --- runs and the table -------------------------------------------------------

measure() {
	local c=$1 v=$2 run=$3 t0=$EPOCHREALTIME detail
	OUT=''
	"run_$c" "$v"
	[[ $OUT == *$'\t'* ]] || OUT+=$'\t'
	detail=${OUT#*$'\t'}
	log "run $run/$RUNS $v: $c ${OUT%%$'\t'*}s${detail:+ ($detail)} (with setup and cleanup $(seconds_since "$t0" 1)s)"
	printf '%s\t%s\t%s\t%s\n' "$v" "$c" "$run" "$OUT" >>"$WORK/times.tsv"
}

runs() {
	local run v k n=${#CONTENDERS[@]}
	: >"$WORK/times.tsv"
	for ((run = 1; run <= RUNS; run++)); do
		for v in "${VARIANTS[@]}"; do
			for ((k = 0; k < n; k++)); do
				measure "${CONTENDERS[(k + run - 1) % n]}" "$v" "$run"
			done
		done
	done
}

# report prints the table of medians, the details and every run's figures.
report() {
	local total_bytes=0 total_files=0 i v gz=0 zs=0
	for i in "${!L_NAME[@]}"; do
		total_bytes=$((total_bytes + L_FILE_BYTES[i])) total_files=$((total_files + L_FILES[i]))
	done
	while IFS=$'\t' read -r i _ _ _ _ _ _ _ gzb _ zsb; do
		[[ $i == index ]] || { gz=$((gz + gzb)); zs=$((zs + zsb)); }
	done <"$IMG/layers.tsv"
	echo "bench-cold $(date -u +%Y-%m-%dT%H:%M:%SZ): scale $SCALE, $RUNS runs, median seconds, caches dropped before each run"
	echo "host: $(nproc) cores, $(uname -r), $(findmnt -n -o FSTYPE -T "$CACHE") on $(findmnt -n -o SOURCE -T "$CACHE")," \
		"layerset-csi $LS_REV, containerd $("$TOOLS_BIN/containerd2" --version | awk '{print $3}')"
	echo "load average (1, 5, 15 min) at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	printf 'image: %d layers, %.0f MiB in %d files (site-packages layer: %d files); gzip %.0f MiB, zstd %.0f MiB\n' \
		"${#L_NAME[@]}" "$(awk -v b="$total_bytes" 'BEGIN { print b / 1048576 }')" "$total_files" "${L_FILES[$SMALL]}" \
		"$(awk -v b="$gz" 'BEGIN { print b / 1048576 }')" "$(awk -v b="$zs" 'BEGIN { print b / 1048576 }')"
	echo
	awk -F'\t' -v runs="$RUNS" '
		# stat(key, how): the median ("median") or the least ("best") of the runs of a contender.
		function stat(key, how,   n, i, j, t, a) {
			n = cnt[key]
			if (n == 0) return ""
			for (i = 1; i <= n; i++) a[i] = val[key, i]
			for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j] < a[j-1]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
			if (how == "best") return a[1]
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		function fmt(x) { return x == "" ? "-" : sprintf("%.2f", x) }
		function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
		function table(how,   i, v, op, om, ct, sk, dc, dk, lim, bind) {
			printf "%-8s %10s %11s %11s %11s %13s %11s %16s %11s  %s\n", how == "best" ? "best of" : "variant", "ours-pull", "ours-mount",
				"containerd", "skopeo+tar", "decomp-limit", "disk-limit", "ours/containerd", "ours/limit", "binding"
			for (i = 1; i <= nv; i++) {
				v = vs[i]
				op = stat(v SUBSEP "ours-pull", how); om = stat(v SUBSEP "ours-mount", how); ct = stat(v SUBSEP "containerd", how)
				sk = stat(v SUBSEP "skopeo-tar", how); dc = stat(v SUBSEP "decomp", how); dk = stat(v SUBSEP "disk", how)
				lim = ""; bind = "-"
				if (dc != "" || dk != "") { lim = (dc + 0 >= dk + 0) ? dc : dk; bind = (dc + 0 >= dk + 0) ? "decomp" : "disk" }
				printf "%-8s %10s %11s %11s %11s %13s %11s %16s %11s  %s\n", v, fmt(op), fmt(om), fmt(ct), fmt(sk), fmt(dc), fmt(dk),
					ratio(op, ct), ratio(op, lim), bind
				m[how, v, "op"] = op; m[how, v, "om"] = om; m[how, v, "ct"] = ct; m[how, v, "lim"] = lim
			}
		}
		{
			key = $1 SUBSEP $2
			cnt[key]++; val[key, cnt[key]] = $4; detail[key, cnt[key]] = $5
			if (!($1 in seenv)) { seenv[$1] = 1; vs[++nv] = $1 }
			if (!($2 in seenc)) { seenc[$2] = 1; cs[++nc] = $2 }
		}
		END {
			table("median")
			print ""
			print "goal: ours-pull <= 0.5x containerd and <= 1.1x the binding limit (medians)"
			for (i = 1; i <= nv; i++) {
				v = vs[i]
				printf "  %-5s ours-pull/containerd %s, ours-pull/limit %s; ours-mount/containerd %s, ours-mount/limit %s\n", v,
					ratio(m["median", v, "op"], m["median", v, "ct"]), ratio(m["median", v, "op"], m["median", v, "lim"]),
					ratio(m["median", v, "om"], m["median", v, "ct"]), ratio(m["median", v, "om"], m["median", v, "lim"])
			}
			if (runs > 1) {
				print ""
				print "the same with each contender'"'"'s fastest run (noise on a shared machine only adds):"
				table("best")
			}
			print ""
			print "every run (seconds; decomp: slowest layer; disk: fio sequential + small-file tar; fetch: curl of every blob)"
			for (i = 1; i <= nv; i++) for (j = 1; j <= nc; j++) {
				key = vs[i] SUBSEP cs[j]
				if (!cnt[key]) continue
				line = sprintf("  %-5s %-11s", vs[i], cs[j])
				for (k = 1; k <= cnt[key]; k++) line = line sprintf(" %8.2f", val[key, k]) (detail[key, k] == "" ? "" : " (" detail[key, k] ")")
				print line
			}
		}' "$WORK/times.tsv"
}

# ours_layers prints, per variant, how long each layer's import took in ours-pull's last run
# (from download start to the layer in place, synced), as logged at -v=2.
ours_layers() {
	local v i f
	for v in "${VARIANTS[@]}"; do
		f=$WORK/ours-pull-$v.last.log
		[[ -f $f ]] || continue
		echo "ours-pull, last $v run: each layer's import (download, decompress, extract, syncfs), all at once up to --parallel"
		for i in "${!L_NAME[@]}"; do
			awk -v d="${L_DIFF[$i]}" -v n="${L_NAME[$i]}" -v mib="$(awk -v b="${L_FILE_BYTES[$i]}" 'BEGIN { printf "%.0f", b / 1048576 }')" \
				-v files="${L_FILES[$i]}" '
				/"Imported layer"/ && index($0, "diffID=\"" d "\"") {
					match($0, /duration="[^"]*"/)
					printf "  %-14s %6s MiB %6d files  %s\n", n, mib, files, substr($0, RSTART + 10, RLENGTH - 11)
				}' "$f"
		done
	done
}

main() {
	local t0=$EPOCHREALTIME
	prepare
	read_layers
	step "registry on $REG" registry_up
	step "push (gzip and zstd tags)" push
	step "small-file layer as a plain tar" small_tar
	runs
	mkdir -p "$(dirname "$RESULT")"
	{ report; echo; ours_layers; } | tee "$RESULT.tmp"
	mv -f "$RESULT.tmp" "$RESULT"
	log "table in $RESULT; whole benchmark $(seconds_since "$t0" 0)s"
}

main "$@"
