package nodeagent

// What the node agent reads and writes, for the node plugin's ClusterRole.
// Nodes and NodeCaches are listed and watched by name (a field selector on
// metadata.name), yet RBAC cannot say so: the verbs cover them all.
// Secrets are read one at a time, by the catalog, for pull secrets. Events
// tell a pod or PersistentVolume what became of the size it asked for.
//
// +kubebuilder:rbac:groups=layerset.io,resources=layersets,verbs=get;list;watch
// +kubebuilder:rbac:groups=layerset.io,resources=nodecaches,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=layerset.io,resources=nodecaches/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
