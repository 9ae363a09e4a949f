// Package v1alpha1 holds the LayerSet API: an ordered chain of read-only
// layers and a per-volume init layer, composed by layerset-csi into one
// overlayfs volume per pod.
//
// +kubebuilder:object:generate=true
// +groupName=layerset.io
package v1alpha1
