// Package packaging tests how layerset-csi is installed: the Helm chart
// rendered with helm for several configurations, the plain manifests in
// deploy/ and the copies of the CRDs in the chart kept in step with their
// sources, and all of it installed, upgraded and uninstalled against a real
// kube-apiserver. It has no code of its own, only tests.
package packaging
