#!/usr/bin/env bash
# Runs every fuzz target of the module, one after the other, each for FUZZTIME, and stops at the
# first failure.
#
#   hack/fuzz.sh [REGEXP]   only the targets whose name matches REGEXP (awk)
#
# FUZZTIME (default 10s) is go test's -fuzztime: a duration (5s) or a count of runs (1000x).
# A target is any `func FuzzXxx` at the start of a line in a *_test.go file git knows about or
# would add (tracked, or untracked and not ignored), so a new target runs before it is committed.
#
# go test fuzzes one target per run, and linking a package's coverage-instrumented test binary
# takes longer than fuzzing it for a few seconds, so each package's binary is built once
# (`go test -c -fuzz`) and run once per target in the package's directory, with go test's own
# corpus cache ($GOCACHE/fuzz/IMPORTPATH): what `go test -run '^$' -fuzz '^FuzzXxx$' ./pkg/dir/`
# does, without the relinking. A failing input is written to the package's
# testdata/fuzz/FuzzXxx/; commit it with the fix, and plain `go test` replays it from then on.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
LOG_TAG=fuzz
# shellcheck source=hack/lib.sh
source "$ROOT/hack/lib.sh"
cd "$ROOT"

FUZZTIME=${FUZZTIME:-10s}
GO=${GO:-go}
filter=${1:-}

# "DIR NAME" per target, sorted by directory, unique (a name may be in several build-tagged files).
mapfile -t targets < <(
	git ls-files --cached --others --exclude-standard -- '*_test.go' |
		xargs -r grep -l '^func Fuzz' |
		while read -r f; do
			grep -o '^func Fuzz[A-Za-z0-9_]*(' "$f" | sed -e 's/^func //' -e 's/($//' |
				while read -r name; do printf './%s/ %s\n' "$(dirname "$f")" "$name"; done
		done | sort -u
)
if [[ -n $filter ]]; then
	mapfile -t targets < <(printf '%s\n' "${targets[@]}" | awk -v re="$filter" '$2 ~ re')
fi
((${#targets[@]} > 0)) || die "no fuzz targets${filter:+ match $filter}"

work=$(mktemp -d)
summary=()
trap 'rc=$?; step_failed "$rc"; rm -rf "$work"; ((${#summary[@]})) && printf "%s\n" "${summary[@]}" >&2; exit "$rc"' EXIT
cache=$("$GO" env GOCACHE)/fuzz
out=$work/out

log "${#targets[@]} fuzz targets, $FUZZTIME each"
t0=$EPOCHREALTIME
built='' bin=''
for t in "${targets[@]}"; do
	dir=${t% *} name=${t#* }
	if [[ $dir != "$built" ]]; then
		step_begin "build $dir"
		bin=$work/$(echo "$dir" | tr / _).test
		"$GO" test -c -fuzz . -o "$bin" "$dir"
		pkg=$("$GO" list "$dir")
		built=$dir
		step_end
	fi

	step_begin "$name ($dir)"
	ts=$EPOCHREALTIME
	rc=0
	(cd "$dir" && "$bin" -test.run '^$' -test.fuzz "^${name}\$" -test.fuzztime "$FUZZTIME" \
		-test.fuzzcachedir "$cache/$pkg" -test.timeout 10m) >"$out" 2>&1 || rc=$?
	note=''
	if ((rc != 0)); then
		# Go before 1.27 can fail a target that found nothing with a bare "context deadline
		# exceeded" when -fuzztime ends while a worker is busy (golang/go#75804): a race in its
		# coordinator, not a finding. Anything else, a written input above all, is one.
		if grep -qx '[[:space:]]*context deadline exceeded' "$out" &&
			! grep -qE 'Failing input written|failure while testing seed corpus|^panic:' "$out"; then
			note='  (go fuzz stop race golang/go#75804, no failing input)'
			log "$name: go test's fuzz coordinator reported its own stop deadline (golang/go#75804), no failing input: not a finding"
		else
			cat "$out" >&2
			summary+=("$(printf 'FAIL %-32s %-24s %6ss' "$name" "$dir" "$(seconds_since "$ts" 1)")")
			log "failing inputs go to ${dir}testdata/fuzz/$name/; rerun them with: $GO test -run '^$name\$' $dir"
			exit 1
		fi
	fi
	# go's last progress line: "fuzz: elapsed: 5s, execs: 12345 (2469/sec), ..."; none when
	# FUZZTIME ran out while the cached corpus was still being replayed (baseline coverage).
	execs=$({ grep -o 'execs: [0-9]*' "$out" || true; } | tail -n1 | cut -d' ' -f2)
	summary+=("$(printf 'ok   %-32s %-24s %6ss %10s execs%s' "$name" "$dir" "$(seconds_since "$ts" 1)" "${execs:-?}" "$note")")
	step_end
done
summary+=("$(printf '%d fuzz targets passed in %ss (FUZZTIME=%s)' "${#targets[@]}" "$(seconds_since "$t0" 0)" "$FUZZTIME")")
