// Package compose turns a LayerSet into what the layer store mounts: the
// resolved chain of layers, nested LayerSets expanded, and the init files
// rendered for one volume.
package compose
