// Package provisioner is the built-in dynamic provisioner and resizer of
// `layerset-csi controller`, for clusters that run no csi-provisioner or
// csi-resizer sidecar. It keeps external-provisioner's contract, so that
// the two can replace each other on a live cluster:
//
//   - A PersistentVolumeClaim of a StorageClass whose provisioner is the
//     driver gets a PersistentVolume named pvc-<claim UID>, made from what
//     the CSI CreateVolume of pkg/csi/controller returns, with a claimRef to the
//     claim; kube-controller-manager's binder completes the binding.
//   - With volumeBindingMode WaitForFirstConsumer it waits for the
//     scheduler's volume.kubernetes.io/selected-node annotation; the node's
//     topology.layerset.io/node label becomes the volume's accessibility
//     requirement, and the accessible topology CreateVolume returns the
//     PersistentVolume's node affinity. A selected node that does not exist
//     is handed back to the scheduler by removing the annotation.
//   - A writable volume keeps its writes on one node, so with Immediate
//     binding, where no node is selected, it is not provisioned: the claim
//     gets a ProvisioningFailed event saying so and waits for a node to be
//     named (WaitForFirstConsumer, or the annotation set by hand).
//     Read-only (ReadOnlyMany) volumes can be composed on every node and
//     are provisioned at once, without node affinity.
//   - The PersistentVolume carries the StorageClass's reclaim policy and
//     mount options, the pv.kubernetes.io/provisioned-by annotation and,
//     while its reclaim policy is Delete, the
//     external-provisioner.volume.kubernetes.io/finalizer finalizer. When
//     the binder marks it Released, DeleteVolume runs first, then the
//     PersistentVolume is deleted and the finalizer removed.
//
// Generic ephemeral volumes take the same path: their claims are ordinary
// claims owned by the pod. The claim's storage request is the volume's
// size; a StorageClass that still sets the deprecated upperSizeHint
// parameter gets the claim a DeprecatedParameter Warning Event.
//
// SetupResizer adds the built-in resizer, for clusters without the
// external-resizer sidecar, keeping its contract too: a bound claim of a
// PersistentVolume of the driver whose storage request exceeds its
// status.capacity gets ControllerExpandVolume, then the PersistentVolume's
// spec.capacity is raised and the claim's status says what kubelet waits
// for before it calls NodeExpandVolume: status.allocatedResources[storage]
// the new size, status.allocatedResourceStatuses[storage]
// NodeResizePending and the condition FileSystemResizePending. kubelet
// then sets status.capacity and clears the rest. A refusal (a shrink, a
// size above the LayerSet's maxSize, a volume the controller did not
// create) is a VolumeResizeFailed Warning Event and the status
// ControllerResizeInfeasible with the condition ControllerResizeError,
// tried again after ResizerOptions.InfeasibleRetry or at once for a new
// request. See resize_status.go.
package provisioner
