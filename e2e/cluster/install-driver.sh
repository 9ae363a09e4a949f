#!/usr/bin/env bash
# Installs layerset-csi on the cluster up.sh made, the way a user would:
# builds the image without Docker (hack/image.sh), imports it into the
# node's containerd, and installs the chart with e2e/values.yaml plus what
# only this cluster knows (written to WORK_DIR/driver/values.yaml). Waits
# until the node plugin and the controller run and the kubelet lists the
# driver in the node's CSINode. Run again, it upgrades the release to the
# image built from the current tree.
#
# E2E_HELM_VALUES: further values files, comma-separated, applied last (and
# by the suite's upgrade scenario too).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root
[[ -f $CLUSTER_ENV ]] || die "no cluster in $W: run e2e/cluster/up.sh first"
source "$CLUSTER_ENV"

RELEASE=${E2E_RELEASE:-layerset-csi}
NAMESPACE=${E2E_NAMESPACE:-layerset-system}
CHART=$E2E_ROOT/charts/layerset-csi
REPOSITORY=ghcr.io/layerset/layerset-csi
D=$W/driver
mkdir -p "$D"

# image: builds and imports the image, and prints the tag it is known by in
# the node's containerd, named after its digest: a rebuilt image gets a new
# tag, so an upgrade rolls the pods.
image() {
	local t0=$EPOCHREALTIME archive digest
	OUT=$D/image VERSION=e2e PLATFORMS=linux/$(go env GOARCH) bash "$E2E_ROOT/hack/image.sh" >&2 ||
		die "hack/image.sh failed: the driver's image cannot be built from this tree"
	timing "driver image built (hack/image.sh)" "$t0"
	t0=$EPOCHREALTIME
	archive=$D/image/layerset-csi-linux-$(go env GOARCH).tar
	[[ -f $archive ]] || die "hack/image.sh wrote no $archive"
	ctr -a "$CONTAINERD_SOCK" -n k8s.io images import "$archive" >/dev/null
	digest=$(ctr -a "$CONTAINERD_SOCK" -n k8s.io images ls "name==$REPOSITORY:e2e" | awk 'NR == 2 { print $3 }')
	[[ $digest == sha256:* ]] || die "containerd does not list $REPOSITORY:e2e after importing $archive"
	ctr -a "$CONTAINERD_SOCK" -n k8s.io images tag --force "$REPOSITORY:e2e" "$REPOSITORY:e2e-${digest:7:12}" >/dev/null
	timing "driver image imported" "$t0"
	echo "e2e-${digest:7:12}"
}

write_values() {
	cat >"$D/values.yaml" <<-EOF
		# Written by e2e/cluster/install-driver.sh for the cluster in $W.
		image:
		  repository: $REPOSITORY
		  tag: $1
		kubeletRootDir: $E2E_KUBELET_DIR
		node:
		  storeDir: $E2E_STORE_DIR
		  insecureRegistries: ["$E2E_REGISTRY"]
		controller:
		  # The controller resolves LayerSets' images in the same registry.
		  extraArgs: ["--insecure-registry=$E2E_REGISTRY"]
	EOF
}

registered() {
	kubectl_admin get csinode "$E2E_NODE" -o jsonpath='{.spec.drivers[*].name}' | grep -qw csi.layerset.io
}

extra=() values=$E2E_ROOT/e2e/values.yaml,$D/values.yaml
IFS=, read -ra files <<<"${E2E_HELM_VALUES:-}"
for f in "${files[@]}"; do
	[[ -f $f ]] || die "E2E_HELM_VALUES: no file $f"
	extra+=(--values "$(realpath "$f")")
	values+=,$(realpath "$f")
done

tag=$(image) || exit 1
write_values "$tag"
cat >"$D/env.tmp" <<-EOF
	# The layerset-csi release of the e2e cluster; cluster.env sources this.
	export E2E_RELEASE=$RELEASE
	export E2E_NAMESPACE=$NAMESPACE
	export E2E_CHART=$CHART
	export E2E_VALUES=$values
	export E2E_IMAGE=$REPOSITORY:$tag
EOF
mv "$D/env.tmp" "$D/env"
t0=$EPOCHREALTIME
# helm --wait can see a DaemonSet as ready before its controller counted any
# pod, so the rollouts are waited for with kubectl as well.
if ! "$BIN/helm" --kubeconfig "$KUBECONFIG_ADMIN" upgrade --install "$RELEASE" "$CHART" \
	--namespace "$NAMESPACE" --create-namespace \
	--values "$E2E_ROOT/e2e/values.yaml" --values "$D/values.yaml" "${extra[@]}" \
	--wait --timeout 3m >"$W/logs/helm.log" 2>&1 ||
	! kubectl_admin rollout status -n "$NAMESPACE" --timeout 3m \
		daemonset -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=node" >>"$W/logs/helm.log" 2>&1 ||
	! kubectl_admin rollout status -n "$NAMESPACE" --timeout 3m \
		deployment -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=controller" >>"$W/logs/helm.log" 2>&1; then
	tail -n 5 "$W/logs/helm.log" >&2
	kubectl_admin get pods -n "$NAMESPACE" -o wide >&2 || true
	kubectl_admin logs -n "$NAMESPACE" -l "app.kubernetes.io/instance=$RELEASE" --all-containers --tail 10 --prefix >&2 || true
	die "layerset-csi did not become ready (helm upgrade --install, log: $W/logs/helm.log)"
fi
wait_for "csi.layerset.io in CSINode $E2E_NODE" 60 "" registered
timing "helm install to ready" "$t0"
# A container without a readiness probe is ready the moment it starts, even
# one that exits right after: ready means no restart for a while.
for _ in 1 2 3 4 5; do
	restarts=$(kubectl_admin get pods -n "$NAMESPACE" -l "app.kubernetes.io/instance=$RELEASE" \
		-o jsonpath='{range .items[*]}{.metadata.name}={.status.containerStatuses[*].restartCount}{"\n"}{end}' | grep -v '=0$' || true)
	if [[ -n $restarts ]]; then
		kubectl_admin logs -n "$NAMESPACE" -l "app.kubernetes.io/instance=$RELEASE" --all-containers --previous --tail 10 --prefix >&2 || true
		die "layerset-csi containers restarted: $restarts"
	fi
	sleep 1
done
log "layerset-csi $tag installed: release $RELEASE in namespace $NAMESPACE"
