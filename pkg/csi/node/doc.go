// Package node is the CSI Node service of layerset-csi: it composes each
// volume from a LayerSet's cached layers with overlayfs (through package
// assemble), at the target of an inline volume or the staging path of a
// persistent one, and bind-mounts staged volumes to their targets.
//
// It keeps one record per volume under its state directory, written
// before every step that changes the mount table and after it completes,
// so that a plugin restarted after a crash knows every mount it made,
// finishes or undoes what was cut short, and can answer kubelet's
// unpublish and unstage calls for every volume it had.
package node
