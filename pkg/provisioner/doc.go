// Package provisioner is the built-in dynamic provisioner of
// `layerset-csi controller`, for clusters that run no csi-provisioner
// sidecar. It keeps external-provisioner's contract, so that the two can
// replace each other on a live cluster:
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
// claims owned by the pod.
package provisioner
