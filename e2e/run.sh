#!/usr/bin/env bash
# The end-to-end test (`make e2e`): builds, or reuses, the Kubernetes binaries
# and the suite, brings a single-node cluster up, installs layerset-csi with
# its chart, runs the scenarios of e2e/*_test.go against it, and always tears
# the cluster down and proves the host is as it was before. Prints the
# timings; exits non-zero if anything failed.
#
# Environment: E2E_RUN, a -test.run pattern to run some scenarios only
# (e.g. 'TestE2E$/^(install|layersets|inline)$'); E2E_TIMEOUT (default 40m)
# bounds the suite; E2E_HELM_VALUES (install-driver.sh); the settings of
# e2e/cluster/lib.sh.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"

need_root
T0=$EPOCHREALTIME
HOSTCHECK=$W/hostcheck
SUITE=$W/cache/e2e.test
STARTED=0

# diagnostics saves what a failed run needs for its post-mortem.
diagnostics() {
	if [[ ! -f $KUBECONFIG_ADMIN ]] || ! pid_alive kube-apiserver; then
		return 0
	fi
	local f=$W/logs/diagnostics.txt
	{
		echo "### pods"
		kubectl_admin get pods -A -o wide
		echo "### events"
		kubectl_admin get events -A --sort-by=.lastTimestamp
		echo "### layersets"
		kubectl_admin get layersets -o yaml
		echo "### pvc, pv"
		kubectl_admin get pvc -A -o wide
		kubectl_admin get pv -o wide
		echo "### driver logs"
		kubectl_admin logs -n "${E2E_NAMESPACE:-layerset-system}" -l app.kubernetes.io/part-of=layerset-csi \
			--all-containers --prefix --tail 200
		echo "### mounts under $W"
		mounts_under "$W"
	} >"$f" 2>&1
	log "diagnostics in $f; logs of every component in $W/logs"
}

finish() {
	local rc=$? down_rc=0 host_rc=0
	trap - EXIT INT TERM
	if ((STARTED)); then
		((rc == 0)) || diagnostics
		bash "$E2E_CLUSTER_DIR/down.sh" || down_rc=$?
		bash "$E2E_CLUSTER_DIR/hoststate.sh" snapshot "$HOSTCHECK/after"
		bash "$E2E_CLUSTER_DIR/hoststate.sh" compare "$HOSTCHECK/before" "$HOSTCHECK/after" || host_rc=$?
	fi
	timing "make e2e" "$T0"
	echo "--- timings"
	cat "$TIMINGS" 2>/dev/null
	if ((rc == 0 && down_rc == 0 && host_rc == 0)); then
		echo "E2E PASSED"
		exit 0
	fi
	echo "E2E FAILED: suite exit $rc, teardown exit $down_rc, host check exit $host_rc"
	exit $((rc != 0 ? rc : 1))
}

mkdir -p "$W/logs" "$W/cache" "$HOSTCHECK"
: >"$TIMINGS"
export E2E_TIMINGS_APPEND=1
trap finish EXIT
trap 'exit 130' INT TERM

# Everything that can fail without a cluster comes first. A step (hack/lib.sh)
# records its time; a failed one stops the run.
step "tools (hack/tools.sh k8s helm)" bash "$E2E_ROOT/hack/tools.sh" k8s helm || exit 1
step "Debian packages" bash "$E2E_CLUSTER_DIR/packages.sh" || exit 1
# up.sh need not install them again.
export E2E_PREPARED=1
step "suite built (go test -c -tags e2e)" \
	bash -c "cd '$E2E_ROOT' && go test -tags e2e -c -o '$SUITE' ./e2e" || exit 1

# A cluster of `make cluster` is the user's: refuse, and leave it alone.
if why=$(cluster_exists); then
	log "error: $why: make e2e runs its own cluster; remove that one first (make cluster-down)"
	exit 1
fi
bash "$E2E_CLUSTER_DIR/hoststate.sh" snapshot "$HOSTCHECK/before" || exit 1
STARTED=1
bash "$E2E_CLUSTER_DIR/up.sh" || exit 1
bash "$E2E_CLUSTER_DIR/install-driver.sh" || exit 1

# shellcheck source=/dev/null # written by up.sh
source "$CLUSTER_ENV"
t0=$EPOCHREALTIME
(cd "$E2E_ROOT/e2e" && "$SUITE" -test.v -test.count=1 -test.timeout "${E2E_TIMEOUT:-40m}" ${E2E_RUN:+-test.run "$E2E_RUN"}) 2>&1 |
	tee "$W/logs/suite.log"
rc=${PIPESTATUS[0]}
timing "suite" "$t0"
exit "$rc"
