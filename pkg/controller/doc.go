// Package controller is the cluster side of layerset-csi: a reconciler
// that resolves every LayerSet to a chain of layers pinned by digest,
// writes it to the LayerSet's status for the nodes to mount, and sums up
// the NodeCaches that the node agents write into per-LayerSet readiness.
//
// Resolution talks to registries, so it runs only when what it depends on
// changes: the LayerSet's spec, the specs of the LayerSets it includes, or,
// after a failure, its pull secrets; failures from the registry are retried
// with backoff. A resolved chain is kept until then, so a tag pushed again
// reaches volumes only when the LayerSet is edited.
package controller
