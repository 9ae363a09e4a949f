// Package driver implements the CSI services of layerset-csi: Identity,
// and Node, which composes each volume from a LayerSet's cached layers
// with overlayfs, and the gRPC server that serves them.
//
// Node keeps one record per volume under its state directory, written
// before every step that changes the mount table and after it completes,
// so that a plugin restarted after a crash knows every mount it made,
// finishes or undoes what was cut short, and can answer kubelet's
// unpublish and unstage calls for every volume it had.
package driver
