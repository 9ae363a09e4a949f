package provisioner

// What the provisioner and the resizer read and write, for the
// controller's ClusterRole. Nodes are read one at a time, for the topology
// label of the node the scheduler selected; claims are patched only to
// hand a claim back to the scheduler, their status only by the resizer,
// as are PersistentVolumes' capacities.
//
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get;list;watch;create;delete;patch
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
