package controller

// What the controller reads and writes; `make generate` turns these into
// config/rbac. Secrets are listed and watched for their metadata only (a
// change to one re-resolves the LayerSets that pull with it); their data is
// read with get, one named Secret at a time.
//
// +kubebuilder:rbac:groups=layerset.io,resources=layersets,verbs=get;list;watch
// +kubebuilder:rbac:groups=layerset.io,resources=layersets/status,verbs=update
// +kubebuilder:rbac:groups=layerset.io,resources=nodecaches,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
//
// Leader election, in the namespace the controller runs in.
//
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update,namespace=layerset-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=layerset-system
