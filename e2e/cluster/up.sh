#!/usr/bin/env bash
# Brings up a single-node Kubernetes cluster on this machine: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet with
# containerd, runc and the CNI bridge plugin, plus a registry on the node.
# Nothing is written outside the work dir but what lib.sh lists, and
# down.sh removes that. Writes WORK_DIR/cluster.env:
#
#   source .cache/e2e/cluster.env && kubectl get nodes
#
# Fails, and leaves the pieces it started for down.sh, when a step fails.
# Installs the Debian packages and builds the tools first, unless E2E_PREPARED
# says the caller (run.sh) did.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root
NODE_IP=$(node_ip)

preflight() {
	local why
	if why=$(cluster_exists); then
		die "$why: remove that cluster first (make cluster-down, or e2e/cluster/down.sh)"
	fi
	# The kubelet's unix sockets live under the work dir; sun_path holds 107 bytes.
	local longest=$KUBELET_DIR/plugins_registry/csi.layerset.io-reg.sock
	((${#longest} < 100)) || die "work dir $W is too deep for unix sockets ($longest): set E2E_DIR to a shorter path"
}

# fresh_dirs wipes the state of an earlier cluster, keeping cache/ (images
# built from inputs that rarely change).
fresh_dirs() {
	rm -rf "$W"/{pki,etcd,containerd,cni,kubelet,node,registry,run,host,driver,cluster.env,kubeconfig} "$W"/logs/*.log
	mkdir -p "$W"/{pki,etcd,containerd,cni/net.d,cni/ipam,kubelet/manifests,kubelet/pod-logs,registry,run,logs,host,cache} \
		"$KUBELET_DIR" "$STORE_DIR"
	# make e2e keeps the timings of its own steps before this one.
	[[ -n ${E2E_TIMINGS_APPEND:-} ]] || : >"$TIMINGS"
	local p
	for p in "${HOST_PATHS[@]}"; do
		[[ -e $p || -L $p ]] || echo "$p"
	done >"$W/host/absent-paths"
	for p in /sys/fs/cgroup /sys/fs/cgroup/*/; do
		p=${p%/}/$CGROUP_PARENT
		[[ -d $p ]] || echo "$p"
	done >"$W/host/absent-cgroups"
}

network() {
	ip link add "$BRIDGE" type bridge
	# A bridge without an address of its own takes its ports' lowest MAC, which
	# changes as pods come and go; pods then hold a stale gateway address until
	# their ARP entries expire (up to ~45 s of dropped traffic to the host).
	ip link set "$BRIDGE" address "$(cat "/sys/class/net/$BRIDGE/address")"
	ip addr add "$POD_GW/${POD_CIDR#*/}" dev "$BRIDGE"
	# Pods reach the API server where in-cluster clients look for it, the
	# `kubernetes` Service IP: without kube-proxy it is simply an address of
	# this host, on the bridge that goes away with the cluster.
	ip addr add "$API_IP/32" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	render "$E2E_CLUSTER_DIR/config/cni.conflist" "$W/cni/net.d/10-e2e.conflist"
}

# cert NAME SUBJECT EKU [SAN]: a P-256 key and a certificate signed by the CA.
cert() {
	local d=$W/pki ext
	ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$3"
	[[ -z ${4:-} ]] || ext+=$'\n'"subjectAltName=$4"
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/$1.key" 2>/dev/null
	openssl req -new -key "$d/$1.key" -subj "$2" -out "$d/$1.csr" 2>/dev/null
	openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 7 \
		-extfile <(echo "$ext") -out "$d/$1.crt" 2>/dev/null
	rm -f "$d/$1.csr"
}

# kubeconfig FILE CERT: a kubeconfig for the client certificate CERT.
kubeconfig() {
	cat >"$1" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: e2e
		  cluster:
		    server: https://$API_IP:$API_PORT
		    certificate-authority: $W/pki/ca.crt
		users:
		- name: $2
		  user:
		    client-certificate: $W/pki/$2.crt
		    client-key: $W/pki/$2.key
		contexts:
		- name: e2e
		  context: {cluster: e2e, user: $2}
		current-context: e2e
	EOF
}

# pki: a CA, and a certificate for each component with the identity RBAC's
# bootstrap roles expect, as kubeadm issues them.
pki() {
	local d=$W/pki
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$d/ca.key" -subj "/CN=layerset-e2e-ca" -days 7 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$d/ca.crt" 2>/dev/null
	cert apiserver "/CN=kube-apiserver" serverAuth \
		"IP:$API_IP,IP:127.0.0.1,IP:$NODE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
	cert kubelet "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
	cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
	cert admin "/O=system:masters/CN=e2e-admin" clientAuth
	cert node "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
	cert controller-manager "/CN=system:kube-controller-manager" clientAuth
	cert scheduler "/CN=system:kube-scheduler" clientAuth
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/sa.key" 2>/dev/null
	openssl ec -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
	kubeconfig "$KUBECONFIG_ADMIN" admin
	kubeconfig "$W/kubelet/kubeconfig" node
	kubeconfig "$W/controller-manager.kubeconfig" controller-manager
	kubeconfig "$W/scheduler.kubeconfig" scheduler
}

control_plane() {
	start etcd "$BIN/etcd" --name e2e --data-dir "$W/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync
	start kube-apiserver "$BIN/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--bind-address="$API_IP" --secure-port="$API_PORT" --advertise-address="$API_IP" \
		--tls-cert-file="$W/pki/apiserver.crt" --tls-private-key-file="$W/pki/apiserver.key" \
		--client-ca-file="$W/pki/ca.crt" \
		--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$W/pki/sa.pub" --service-account-signing-key-file="$W/pki/sa.key" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--endpoint-reconciler-type=none \
		--allow-privileged=true \
		--kubelet-client-certificate="$W/pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$W/pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$W/pki/ca.crt" \
		--kubelet-preferred-address-types=InternalIP
	wait_for "kube-apiserver /readyz" 120 kube-apiserver kubectl_admin get --raw /readyz
}

node_images() {
	local c=$W/cache
	# Rebuilt only when an input changed: the sources, or Debian's busybox.
	if [[ ! -f $c/busybox.tar || -n $(find "$E2E_ROOT/e2e/cmd" /bin/busybox -newer "$c/busybox.tar" -print -quit) ]]; then
		(cd "$E2E_ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$c/pause" ./e2e/cmd/pause &&
			go run ./e2e/cmd/nodeimages -out "$c" -pause "$c/pause" -pause-ref "$PAUSE_IMAGE" \
				-busybox /bin/busybox -busybox-ref "$BUSYBOX_IMAGE" -applets "$(/bin/busybox --list | paste -sd,)")
	fi
}

containerd_up() {
	render "$E2E_CLUSTER_DIR/config/containerd.toml" "$W/containerd/config.toml"
	start containerd containerd --config "$W/containerd/config.toml"
	wait_for "containerd" 60 containerd ctr -a "$CONTAINERD_SOCK" version
	local tar
	for tar in "$W/cache/pause.tar" "$W/cache/busybox.tar"; do
		ctr -a "$CONTAINERD_SOCK" -n k8s.io images import "$tar" >/dev/null
	done
}

registry_up() {
	render "$E2E_CLUSTER_DIR/config/registry.yaml" "$W/registry.yaml"
	start registry docker-registry serve "$W/registry.yaml"
	wait_for "registry on $NODE_IP:$REGISTRY_PORT" 30 registry curl -sf "http://$NODE_IP:$REGISTRY_PORT/v2/"
}

kubelet_up() {
	render "$E2E_CLUSTER_DIR/config/kubelet.yaml" "$W/kubelet/config.yaml"
	# Its own peer group: on a host whose / is shared, a bind mount would
	# otherwise join /'s, and every volume mount would show up twice.
	mount --bind "$NODE_ROOT" "$NODE_ROOT"
	mount --make-private "$NODE_ROOT"
	mount --make-rshared "$NODE_ROOT"
	# unshare execs (no fork), so the recorded PID is the kubelet's.
	start kubelet unshare --mount --propagation unchanged "$E2E_CLUSTER_DIR/config/kubelet-ns.sh" "$NODE_ROOT" "$W" \
		"$BIN/kubelet" --config="$W/kubelet/config.yaml" --kubeconfig="$W/kubelet/kubeconfig" \
		--root-dir="$KUBELET_DIR" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=2
	wait_for "node $NODE_NAME Ready" 120 kubelet node_ready
}

node_ready() {
	[[ $(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

# controllers_start starts the controller-manager and the scheduler, which
# need only the API server; controllers_wait waits for them later, so that
# they start while the node comes up.
controllers_start() {
	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig="$W/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$W/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$W/controller-manager.kubeconfig" \
		--leader-elect=false --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
		--controllers='*,-node-ipam-controller' \
		--service-account-private-key-file="$W/pki/sa.key" --root-ca-file="$W/pki/ca.crt" \
		--use-service-account-credentials=true
	start kube-scheduler "$BIN/kube-scheduler" \
		--kubeconfig="$W/scheduler.kubeconfig" \
		--authentication-kubeconfig="$W/scheduler.kubeconfig" \
		--authorization-kubeconfig="$W/scheduler.kubeconfig" \
		--leader-elect=false --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT"
}

controllers_wait() {
	wait_for "kube-controller-manager /healthz" 60 kube-controller-manager curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
	wait_for "kube-scheduler /healthz" 60 kube-scheduler curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"
	# Pods are refused until the service-account controller made the
	# namespace's default ServiceAccount.
	wait_for "ServiceAccount default/default" 60 kube-controller-manager kubectl_admin get serviceaccount default -n default
}

write_env() {
	cat >"$CLUSTER_ENV.tmp" <<-EOF
		# The e2e cluster, for a shell (source this file) and for the e2e suite.
		export KUBECONFIG=$KUBECONFIG_ADMIN
		export PATH=$BIN:\$PATH
		export E2E_DIR=$W
		export E2E_KUBECTL=$KUBECTL
		export E2E_HELM=$BIN/helm
		export E2E_NODE=$NODE_NAME
		export E2E_NODE_IP=$NODE_IP
		export E2E_REGISTRY=$NODE_IP:$REGISTRY_PORT
		export E2E_REGISTRY_LOG=$W/logs/registry.log
		export E2E_KUBELET_DIR=$KUBELET_DIR
		export E2E_STORE_DIR=$STORE_DIR
		export E2E_CONTAINERD_SOCK=$CONTAINERD_SOCK
		export E2E_BUSYBOX_IMAGE=$BUSYBOX_IMAGE
		export E2E_TIMINGS=$TIMINGS
		if [ -f $W/driver/env ]; then . $W/driver/env; fi
	EOF
	mv "$CLUSTER_ENV.tmp" "$CLUSTER_ENV"
}

# A failed step (hack/lib.sh) stops the script (set -e); the trap names it.
trap 'step_failed $?' EXIT

preflight
# make e2e (run.sh) has just done these; make cluster has not. The packages
# go in before fresh_dirs records which host paths were absent.
if [[ -z ${E2E_PREPARED:-} ]]; then
	bash "$E2E_CLUSTER_DIR/packages.sh"
	bash "$E2E_ROOT/hack/tools.sh" k8s helm
fi
fresh_dirs
step "node images (pause, busybox)" node_images
T_UP=$EPOCHREALTIME
step "network ($BRIDGE, $POD_CIDR, $API_IP)" network
step "PKI" pki
step "etcd + kube-apiserver ready" control_plane
controllers_start
step "containerd ready, images imported" containerd_up
step "registry ready" registry_up
step "kubelet: node Ready" kubelet_up
step "controller-manager + scheduler ready" controllers_wait
write_env
timing "cluster up" "$T_UP"
log "cluster up: source $CLUSTER_ENV; kubectl get nodes"
