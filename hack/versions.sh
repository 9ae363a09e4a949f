# The versions of the external tools this repository builds and renders for, pinned in one place;
# sourced (by hack/tools.sh, hack/render-deploy.sh), never run. Each can be overridden from the
# environment. test/packaging/chart_test.go and the READMEs name KUBERNETES_VERSION too: change
# them with it.
# shellcheck shell=bash disable=SC2034

# The Kubernetes binaries hack/tools.sh builds (e2e cluster, envtest), and the version helm renders
# the chart for in hack/render-deploy.sh.
KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.1}
ETCD_VERSION=${ETCD_VERSION:-v3.6.8}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CSI_TEST_VERSION=${CSI_TEST_VERSION:-v5.6.0}
GOLANGCI_LINT_VERSION=${GOLANGCI_LINT_VERSION:-v2.15.0}
# containerd 2 and ctr (hack/tools.sh containerd2): what bench/cold compares our pull with.
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
# csi-snapshotter and snapshot-controller (hack/tools.sh snapshotter): CSI snapshots on a cluster,
# with distributed snapshotting (csi-snapshotter --node-deployment in the node DaemonSet).
EXTERNAL_SNAPSHOTTER_VERSION=${EXTERNAL_SNAPSHOTTER_VERSION:-v8.7.0}
