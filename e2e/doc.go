//go:build e2e

// Package e2e proves layerset-csi the way a user meets it: on a real
// single-node Kubernetes cluster (e2e/cluster), with the driver installed
// from its Helm chart, LayerSet images pulled from a registry on the node
// over the network, and every scenario checked through the API, kubectl
// exec and the node's mount table.
//
// The suite needs the cluster: run it with `make e2e`, which brings the
// cluster up, installs the driver, runs `go test -tags e2e ./e2e` and tears
// everything down, or against the cluster of `make cluster` with
//
//	source .cache/e2e/cluster.env && go test -tags e2e -count=1 -v ./e2e
//
// The build tag keeps it out of `go test ./...`.
package e2e
