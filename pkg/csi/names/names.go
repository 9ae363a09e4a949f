// Package names holds the names the node side and the cluster side of
// layerset-csi must agree on: the driver name, the topology key, and the
// keys of volume contexts and StorageClass parameters. It imports nothing,
// so every package may use it.
package names

// DriverName is the CSI driver name, as a CSIDriver object and
// StorageClasses name it.
const DriverName = "csi.layerset.io"

// TopologyKey is the topology segment a node reports: persistent volumes
// keep their writes on one node's disk, so they are reachable only there.
const TopologyKey = "topology.layerset.io/node"

// Volume context keys.
const (
	// ContextLayerSet names the LayerSet a volume is composed from.
	ContextLayerSet = "layerSet"
	// ContextUpperSizeHint carries ParamUpperSizeHint to the node, in the
	// canonical form of the quantity.
	ContextUpperSizeHint = "upperSizeHint"

	// ContextPodName and the keys below are what kubelet adds when the
	// CSIDriver object sets podInfoOnMount.
	ContextPodName        = "csi.storage.k8s.io/pod.name"
	ContextPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	ContextPodUID         = "csi.storage.k8s.io/pod.uid"
	ContextServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	ContextEphemeral      = "csi.storage.k8s.io/ephemeral"
)

// StorageClass parameters CreateVolume understands.
const (
	// ParamLayerSet names the LayerSet the volumes are composed from.
	ParamLayerSet = "layerSet"
	// ParamUpperSizeHint is how much the writable upper is expected to
	// hold, a resource quantity such as 10Gi.
	ParamUpperSizeHint = "upperSizeHint"
)
