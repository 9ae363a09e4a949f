#!/usr/bin/env bash
# Builds the external binaries our tests, lint and benchmarks run (etcd, the Kubernetes control plane
# and kubelet, kubectl, helm, csi-sanity, golangci-lint, containerd 2 and its ctr, csi-snapshotter and
# snapshot-controller) from the Go module proxy, the only source reachable from our build machines,
# and caches them in .cache/tools/<name>-<version>/ with .cache/bin/<name> linking to the current
# version. A binary is built only when its versioned copy is missing, so a warm run only checks
# links; to rebuild one (say, after changing how it is built), delete its
# .cache/tools/<name>-<version>.
#
#   hack/tools.sh [NAME...]       NAME: etcd kube-apiserver kubectl kube-controller-manager
#                                       kube-scheduler kubelet helm csi-sanity golangci-lint containerd
#                                       ctr csi-snapshotter snapshot-controller, or a group: envtest (etcd
#                                       kube-apiserver kubectl), k8s (the six Kubernetes binaries an e2e
#                                       cluster runs), containerd2 (containerd ctr: the daemon and its
#                                       client, no shim, so enough to pull and unpack images, not to run
#                                       containers; linked as .cache/bin/containerd2 and ctr2), snapshotter (csi-snapshotter snapshot-controller:
#                                       external-snapshotter's sidecar and controller), all.
#                                       Default: envtest helm csi-sanity.
#   hack/tools.sh --print-dir [NAME...]
#                                 prints the absolute .cache/bin dir (e.g. for KUBEBUILDER_ASSETS),
#                                 after building the NAMEs if any are given.
#
# The versions are pinned in hack/versions.sh. Logs go to stderr, so
# `KUBEBUILDER_ASSETS=$(hack/tools.sh --print-dir envtest)` works.
# TOOLS_NICE (default 10) is the niceness of the builds: our machines are shared.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
LOG_TAG=tools
# shellcheck source=hack/lib.sh
source "$ROOT/hack/lib.sh"
# shellcheck source=hack/versions.sh
source "$ROOT/hack/versions.sh"
TOOLS_NICE=${TOOLS_NICE:-10}

CACHE=$ROOT/.cache
TOOLS=$CACHE/tools
SRC=$CACHE/src
BIN=$CACHE/bin

KUBE_TOOLS=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet)
CONTAINERD_TOOLS=(containerd ctr)
SNAPSHOTTER_TOOLS=(csi-snapshotter snapshot-controller)
ALL_TOOLS=(etcd "${KUBE_TOOLS[@]}" helm csi-sanity golangci-lint "${CONTAINERD_TOOLS[@]}" "${SNAPSHOTTER_TOOLS[@]}")

# Steps (hack/lib.sh) run as plain commands and keep `set -e`; the EXIT trap names the step a
# failure stopped in.
WORK='' SCRATCH=''
on_exit() {
	local rc=$?
	step_failed "$rc"
	# Temp dirs hold half-built binaries and half-prepared trees: never leave them behind.
	[[ -z $WORK ]] || rm -rf "$WORK"
	[[ -z $SCRATCH ]] || rm -rf "$SCRATCH"
	exit "$rc"
}
trap on_exit EXIT

usage() {
	sed -n '/^#   hack/,/^# TOOLS_NICE/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

version_of() {
	case $1 in
	etcd) echo "$ETCD_VERSION" ;;
	kube-apiserver | kubectl | kube-controller-manager | kube-scheduler | kubelet) echo "$KUBERNETES_VERSION" ;;
	helm) echo "$HELM_VERSION" ;;
	csi-sanity) echo "$CSI_TEST_VERSION" ;;
	golangci-lint) echo "$GOLANGCI_LINT_VERSION" ;;
	containerd | ctr) echo "$CONTAINERD_VERSION" ;;
	csi-snapshotter | snapshot-controller) echo "$EXTERNAL_SNAPSHOTTER_VERSION" ;;
	*) return 1 ;;
	esac
}

cached() { echo "$TOOLS/$1-$(version_of "$1")/$1"; }

# expand sets NAMES to the tools the arguments name, groups expanded, once each, in order.
NAMES=()
expand() {
	local -A seen=()
	local arg name
	local -a names
	for arg in "$@"; do
		case $arg in
		envtest) names=(etcd kube-apiserver kubectl) ;;
		k8s) names=(etcd "${KUBE_TOOLS[@]}") ;;
		containerd2) names=("${CONTAINERD_TOOLS[@]}") ;;
		snapshotter) names=("${SNAPSHOTTER_TOOLS[@]}") ;;
		all) names=("${ALL_TOOLS[@]}") ;;
		*)
			version_of "$arg" >/dev/null ||
				die "unknown tool '$arg'; want one of: ${ALL_TOOLS[*]} envtest k8s containerd2 snapshotter all"
			names=("$arg")
			;;
		esac
		for name in "${names[@]}"; do
			[[ -n ${seen[$name]:-} ]] || { seen[$name]=1; NAMES+=("$name"); }
		done
	done
}

# bin_name is NAME's link in .cache/bin: containerd 2's are containerd2 and ctr2, so that a PATH
# starting with .cache/bin (make test's) still finds the host's containerd, which tests run.
bin_name() {
	case $1 in
	containerd | ctr) echo "${1}2" ;;
	*) echo "$1" ;;
	esac
}

# link points .cache/bin/NAME at the cached version; rename makes the switch atomic for readers.
link() {
	local name=$1 target bin
	target=../tools/$name-$(version_of "$name")/$name
	bin=$(bin_name "$name")
	[[ $(readlink "$BIN/$bin" 2>/dev/null) == "$target" ]] && return 0
	mkdir -p "$BIN"
	ln -sfn "$target" "$BIN/.$bin.$$"
	mv -Tf "$BIN/.$bin.$$" "$BIN/$bin"
	log "linked bin/$bin -> tools/$name-$(version_of "$name")/$name"
}

# gocmd runs go for our own builds only: static, niced, ignoring any go.work and the caller's GOFLAGS
# and GOOS/GOARCH (the binaries must run here). -mod=mod lets go complete go.sum in the prepared trees;
# -buildvcs=false because those trees sit inside this repository's git work tree.
gocmd() {
	env -u GOOS -u GOARCH CGO_ENABLED=0 GOWORK=off GOFLAGS='-mod=mod -buildvcs=false' \
		nice -n "$TOOLS_NICE" go "$@"
}

# ensure_ca_roots installs Debian's CA roots when they are missing, as on a minimal Debian: go
# verifies the module proxy's TLS certificate against them.
ensure_ca_roots() {
	[[ -n ${SSL_CERT_FILE:-} || -n ${SSL_CERT_DIR:-} || -s /etc/ssl/certs/ca-certificates.crt ]] && return 0
	[[ $(go env GOPROXY) == *https://* ]] || return 0
	if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
		die "no CA roots in /etc/ssl/certs to verify $(go env GOPROXY): install ca-certificates"
	fi
	step_begin "installing ca-certificates (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	# A fresh machine may have no package lists yet.
	apt-get install -y -qq --no-install-recommends ca-certificates >&2 ||
		{ apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends ca-certificates >&2; }
	step_end
}

# module_dir MODULE@VERSION downloads the module and prints its (read-only) module cache dir.
module_dir() {
	local json dir
	# Outside any module, so nothing can touch this repository's go.mod or go.sum.
	json=$(cd "$SCRATCH" && gocmd mod download -json "$1" 2>&1) ||
		die "cannot download $1 from $(go env GOPROXY): $json"
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
	[[ -d $dir ]] || die "go mod download -json $1 reported no module dir: $json"
	echo "$dir"
}

# replaces_of GO.MOD prints the old side (path or path@version) of each replace whose new side
# matches the ERE $2.
replaces_of() {
	gocmd mod edit -print "$1" | awk -v want="$2" '
		{ sub(/^replace[ \t]+/, "") }
		{ for (i = 2; i < NF; i++) if ($i == "=>" && $(i + 1) ~ want) print (i == 3 ? $1 "@" $2 : $1) }'
}

# prepare MODULE VERSION NAME EDIT copies the module into .cache/src/NAME-VERSION as a writable main
# module and runs EDIT DIR on it, once: the tree appears only when complete.
prepare() {
	local module=$1 version=$2 dest=$SRC/$3-$2 edit=$4 from tmp
	[[ -d $dest ]] && return 0
	step_begin "preparing $module@$version in .cache/src"
	from=$(module_dir "$module@$version")
	tmp=$WORK/src-$3
	cp -R "$from" "$tmp"
	chmod -R u+w "$tmp"
	rm -rf "$tmp/go.work" "$tmp/go.work.sum" "$tmp/vendor"
	"$edit" "$tmp"
	mkdir -p "$SRC"
	mv -T "$tmp" "$dest"
	step_end
}

# Kubernetes points its k8s.io/* staging modules at ./staging, which the module zip does not contain;
# each is published as k8s.io/X v0.MINOR.PATCH, so require those instead.
edit_kubernetes() {
	local staging="v0.${KUBERNETES_VERSION#v1.}" olds old args=()
	olds=$(replaces_of "$1/go.mod" '^[.]/staging/')
	for old in $olds; do
		args+=("-dropreplace=$old" "-require=${old%@*}@$staging")
	done
	[[ ${#args[@]} -gt 0 ]] || die "k8s.io/kubernetes@$KUBERNETES_VERSION has no ./staging replaces; recipe is out of date"
	gocmd mod edit "${args[@]}" "$1/go.mod"
}

# etcd's server module replaces its sibling modules with ../ paths; the published versions it
# requires are the same code.
edit_etcd() {
	local olds old args=()
	olds=$(replaces_of "$1/go.mod" '.')
	for old in $olds; do
		args+=("-dropreplace=$old")
	done
	[[ ${#args[@]} -eq 0 ]] || gocmd mod edit "${args[@]}" "$1/go.mod"
}

# external-snapshotter points its client module at ./client, a module of its own that the main
# module's zip does not contain; the client of the same release is published as
# github.com/kubernetes-csi/external-snapshotter/client/vN at the same version, so require that.
edit_external_snapshotter() {
	local client="github.com/kubernetes-csi/external-snapshotter/client/${EXTERNAL_SNAPSHOTTER_VERSION%%.*}"
	[[ -n $(replaces_of "$1/go.mod" '^[.]/client$') ]] ||
		die "external-snapshotter@$EXTERNAL_SNAPSHOTTER_VERSION has no ./client replace; recipe is out of date"
	gocmd mod edit "-dropreplace=$client" "-require=$client@$EXTERNAL_SNAPSHOTTER_VERSION" "$1/go.mod"
}

# Without these the binaries report v0.0.0, and clients that check the server version (helm's
# kubeVersion constraints) refuse it.
kube_ldflags() {
	local v=${KUBERNETES_VERSION#v} pkg flags="-s -w"
	local major=${v%%.*} rest=${v#*.}
	local minor=${rest%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=archive"
	done
	echo "$flags"
}

# helm reports its version and, like its Makefile, assumes the Kubernetes version of the client-go it
# was built with (not v1.20) when no cluster is asked, e.g. in `helm template`.
helm_ldflags() {
	local client_go minor pkg=helm.sh/helm/${HELM_VERSION%%.*}
	client_go=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$(module_dir "$pkg@$HELM_VERSION")/go.mod")
	[[ $client_go == v0.* ]] || die "cannot tell which k8s.io/client-go $pkg@$HELM_VERSION uses (got '$client_go')"
	minor=${client_go#v0.}
	minor=${minor%%.*}
	echo "-s -w -X $pkg/internal/version.version=$HELM_VERSION -X $pkg/internal/version.gitTreeState=clean" \
		"-X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$minor" \
		"-X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$minor"
}

# install_bin NAME moves a finished build from $WORK into the cache; the rename is atomic.
install_bin() {
	local dest
	dest=$(cached "$1")
	mkdir -p "$(dirname "$dest")"
	mv -f "$WORK/$1" "$dest"
}

# go_install NAME PKG@VERSION LDFLAGS [TAGS] builds a command whose module needs no edits, with the
# build tags TAGS (comma-separated) if given.
go_install() {
	mkdir -p "$WORK/gobin"
	(cd "$SCRATCH" && GOBIN=$WORK/gobin gocmd install -trimpath -tags "${4:-}" -ldflags "$3" "$2")
	mv -f "$WORK/gobin/$1" "$WORK/$1"
}

build() {
	local name=$1 version ldflags
	version=$(version_of "$name")
	case $name in
	etcd)
		prepare go.etcd.io/etcd/server/v3 "$version" etcd-server edit_etcd
		step_begin "building etcd $version"
		(cd "$SRC/etcd-server-$version" && gocmd build -trimpath -ldflags "-s -w" -o "$WORK/etcd" .)
		;;
	kube-* | kubectl | kubelet)
		prepare k8s.io/kubernetes "$version" kubernetes edit_kubernetes
		step_begin "building $name $version"
		ldflags=$(kube_ldflags)
		(cd "$SRC/kubernetes-$version" && gocmd build -trimpath -ldflags "$ldflags" -o "$WORK/$name" "./cmd/$name")
		;;
	helm)
		step_begin "building helm $version"
		ldflags=$(helm_ldflags)
		go_install helm "helm.sh/helm/${version%%.*}/cmd/helm@$version" "$ldflags"
		;;
	csi-sanity)
		step_begin "building csi-sanity $version"
		go_install csi-sanity "github.com/kubernetes-csi/csi-test/${version%%.*}/cmd/csi-sanity@$version" \
			"-s -w -X main.VERSION=$version"
		;;
	golangci-lint)
		step_begin "building golangci-lint $version"
		go_install golangci-lint "github.com/golangci/golangci-lint/${version%%.*}/cmd/golangci-lint@$version" \
			"-s -w -X main.version=${version#v}"
		;;
	containerd | ctr)
		# Static (CGO_ENABLED=0, as every build here) and without the snapshotters that need cgo or
		# their own kernel features; overlayfs and native stay. The version is what the release
		# binaries report (`containerd --version`, `ctr version`).
		step_begin "building $name $version"
		go_install "$name" "github.com/containerd/containerd/${version%%.*}/cmd/$name@$version" \
			"-s -w -X github.com/containerd/containerd/${version%%.*}/version.Version=$version" \
			no_btrfs,no_devmapper,no_zfs
		;;
	csi-snapshotter | snapshot-controller)
		# One prepared tree builds both; each reports the release's version (`--version`).
		prepare "github.com/kubernetes-csi/external-snapshotter/${version%%.*}" "$version" external-snapshotter \
			edit_external_snapshotter
		step_begin "building $name $version"
		(cd "$SRC/external-snapshotter-$version" &&
			gocmd build -trimpath -ldflags "-s -w -X main.version=$version" -o "$WORK/$name" "./cmd/$name")
		;;
	esac
	install_bin "$name"
	step_end
}

main() {
	local print_dir=0 arg name t0=$EPOCHREALTIME
	local -a args=() names=() missing=()
	for arg in "$@"; do
		case $arg in
		--print-dir) print_dir=1 ;;
		-h | --help) usage; exit 0 ;;
		-*) die "unknown flag $arg (see --help)" ;;
		*) args+=("$arg") ;;
		esac
	done
	if [[ ${#args[@]} -eq 0 ]]; then
		[[ $print_dir -eq 0 ]] || { echo "$BIN"; exit 0; }
		args=(envtest helm csi-sanity)
	fi
	expand "${args[@]}"
	names=("${NAMES[@]}")

	for name in "${names[@]}"; do
		[[ -x $(cached "$name") ]] || missing+=("$name")
	done
	if [[ ${#missing[@]} -gt 0 ]]; then
		mkdir -p "$CACHE"
		# Two runs (two test suites, two engineers) must not build into the same trees at once.
		exec 9>"$CACHE/tools.lock"
		flock -n 9 || { log "waiting for another hack/tools.sh to finish"; flock 9; }
		# Holding the lock, any temp dir left is from a run that was killed.
		rm -rf "$CACHE"/tmp.*
		PATH=$PATH:/usr/local/go/bin
		command -v go >/dev/null || die "go not found in PATH or /usr/local/go/bin"
		ensure_ca_roots
		WORK=$(mktemp -d "$CACHE/tmp.XXXXXX")
		SCRATCH=$(mktemp -d)
		log "building ${missing[*]} with $(go version | cut -d' ' -f3) (nice $TOOLS_NICE)"
		for name in "${missing[@]}"; do
			# Re-check: a run we waited for may have built it.
			[[ -x $(cached "$name") ]] || build "$name"
			link "$name"
		done
	fi
	for name in "${names[@]}"; do
		link "$name"
	done
	log "${names[*]}: ready in $BIN ($(seconds_since "$t0" 1)s)"
	[[ $print_dir -eq 0 ]] || echo "$BIN"
}

main "$@"
