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
	// ContextSize is the limit of the volume's writable upper, a resource
	// quantity such as 10Gi: what a pod's inline volume or a static PV
	// writes in volumeAttributes, and what CreateVolume records from the
	// claim's capacity_range.
	ContextSize = "size"
	// ContextUpperSizeHint is the key ContextSize replaced, deprecated
	// and still read, for one release, with a deprecation event. (No
	// "Deprecated:" marker: reading it is what this release must do.)
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
	// ParamUpperSizeHint was a size for volumes without a capacity
	// request; a claim's resources.requests.storage is the limit now.
	// Deprecated, and still read for one release as the size of claims
	// that request none.
	ParamUpperSizeHint = "upperSizeHint"
)

// The sizes a writable volume may have, in bytes: what the node enforces,
// so that the controller refuses at creation a volume the node would
// refuse at its first mount. Below 1 MiB a volume's own filesystem would
// be mostly metadata; 1 PiB is beyond any node's disk, so more is a
// mistake.
const (
	MinSize int64 = 1 << 20
	MaxSize int64 = 1 << 50
)
