// Package nodeagent is the cluster side of `layerset-csi node`: for the one
// node it runs on, it prefetches the layers of the LayerSets whose
// spec.prefetch selects the node, keeps the layer cache under its budget
// without dropping what is prefetched, reports the cache in the node's
// NodeCache, and removes the kept uppers of persistent volumes whose
// PersistentVolume is gone.
//
// Everything it does is driven by one reconciler per concern, each with a
// single key: "the node" for prefetch, garbage collection and the report;
// "the sweep" for uppers. Watches on the Node, LayerSets, the layer store's
// directory and finished pulls wake the first; PersistentVolume deletions
// wake the second; both also run on a timer, so a missed event costs a
// delay, never a wrong state.
package nodeagent
