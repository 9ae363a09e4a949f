package provisioner

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations and the finalizer of external-provisioner's contract.
const (
	// AnnSelectedNode is set on a claim by the scheduler, with
	// WaitForFirstConsumer binding, to the node its pod goes to.
	AnnSelectedNode = "volume.kubernetes.io/selected-node"
	// AnnProvisionedBy marks a PersistentVolume with the provisioner that
	// made it and that deletes its volume.
	AnnProvisionedBy = "pv.kubernetes.io/provisioned-by"
	// Finalizer holds a PersistentVolume whose reclaim policy is Delete
	// until its volume is deleted.
	Finalizer = "external-provisioner.volume.kubernetes.io/finalizer"
)

// paramUpperSizeHint is the StorageClass parameter the claim's storage
// request replaced; named once here, where the deprecation is
// acknowledged.
const paramUpperSizeHint = names.ParamUpperSizeHint //nolint:staticcheck // SA1019: read for one release (pkg/csi/names)

// deprecatedParameters says what the claim's class asks for in a way that
// goes away, "" if nothing: the user who reads the claim's events is told,
// not only the controller's log.
func deprecatedParameters(claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) string {
	hint, ok := class.Parameters[paramUpperSizeHint]
	if !ok {
		return ""
	}
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.Sign() <= 0 {
		return fmt.Sprintf("StorageClass %q sets parameter %s=%s, which is deprecated: it is this volume's size because the claim requests no storage; "+
			"request the size in the claim (resources.requests.storage) and remove the parameter", class.Name, paramUpperSizeHint, hint)
	}
	return fmt.Sprintf("StorageClass %q sets parameter %s=%s, which is deprecated and ignored: the claim's storage request, %s, is the volume's size; "+
		"remove the parameter", class.Name, paramUpperSizeHint, hint, size.String())
}

// reservedPrefix marks StorageClass parameters meant for the provisioner,
// never passed to CreateVolume.
const (
	reservedPrefix = "csi.storage.k8s.io/"
	paramFSType    = reservedPrefix + "fstype"
)

// volumeName is the name of a claim's PersistentVolume, and of its CSI
// volume: derived from the claim's UID, so that a retry finds the volume
// an earlier attempt created.
func volumeName(claim *corev1.PersistentVolumeClaim) string {
	return "pvc-" + string(claim.UID)
}

// unsupported says why the claim cannot be provisioned however long it
// waits, or "" if it can.
func unsupported(claim *corev1.PersistentVolumeClaim) string {
	switch {
	case claim.Spec.Selector != nil:
		return "claim selector is not supported: a provisioned volume has no labels to select"
	case claim.Spec.DataSource != nil || claim.Spec.DataSourceRef != nil:
		return "data sources are not supported: a volume starts as its LayerSet, it cannot be cloned or restored"
	case claim.Spec.VolumeAttributesClassName != nil && *claim.Spec.VolumeAttributesClassName != "":
		return fmt.Sprintf("VolumeAttributesClass %q is not supported: the volumes have no attributes to modify", *claim.Spec.VolumeAttributesClassName)
	}
	return ""
}

// waitsForConsumer reports whether the class binds volumes only once a
// pod using the claim is scheduled.
func waitsForConsumer(class *storagev1.StorageClass) bool {
	return class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}

// writable reports whether any access mode of the claim writes.
func writable(modes []corev1.PersistentVolumeAccessMode) bool {
	return slices.ContainsFunc(modes, func(m corev1.PersistentVolumeAccessMode) bool { return m != corev1.ReadOnlyMany })
}

// accessMode maps an access mode of a claim to CSI's, as external-provisioner
// does for a controller with the SINGLE_NODE_MULTI_WRITER capability,
// which pkg/csi/controller's has.
func accessMode(m corev1.PersistentVolumeAccessMode) (csi.VolumeCapability_AccessMode_Mode, error) {
	switch m {
	case corev1.ReadWriteOnce:
		return csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, nil
	case corev1.ReadWriteOncePod:
		return csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, nil
	case corev1.ReadOnlyMany:
		return csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, nil
	case corev1.ReadWriteMany:
		return csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, nil
	}
	return 0, fmt.Errorf("access mode %q is unknown", m)
}

// classParameters splits a StorageClass's parameters into those passed to
// CreateVolume and the file system type. Of the reserved parameters only
// the file system type means something here; the secrets others name
// would be silently ignored, so they are refused.
func classParameters(params map[string]string) (map[string]string, string, error) {
	out := make(map[string]string, len(params))
	var fsType string
	for k, v := range params {
		switch {
		case k == paramFSType:
			fsType = v
		case strings.HasPrefix(k, reservedPrefix):
			return nil, "", fmt.Errorf("StorageClass parameter %q is not supported: this driver takes no secrets; remove it", k)
		default:
			out[k] = v
		}
	}
	return out, fsType, nil
}

// topologyRequirement asks for a volume reachable from the node whose
// topology segment is segment: strict, one node, as the node's upper
// lives there.
func topologyRequirement(segment string) *csi.TopologyRequirement {
	t := &csi.Topology{Segments: map[string]string{names.TopologyKey: segment}}
	return &csi.TopologyRequirement{Requisite: []*csi.Topology{t}, Preferred: []*csi.Topology{t}}
}

// createRequest is the CreateVolume request for the claim.
func createRequest(claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, topo *csi.TopologyRequirement) (*csi.CreateVolumeRequest, error) {
	params, fsType, err := classParameters(class.Parameters)
	if err != nil {
		return nil, err
	}
	var access *csi.VolumeCapability_Mount
	var block *csi.VolumeCapability_Block
	if claim.Spec.VolumeMode != nil && *claim.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		// CreateVolume says what is wrong with block volumes.
		block = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		access = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType, MountFlags: class.MountOptions}}
	}
	var caps []*csi.VolumeCapability
	for _, m := range claim.Spec.AccessModes {
		mode, err := accessMode(m)
		if err != nil {
			return nil, err
		}
		c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
		if block != nil {
			c.AccessType = block
		} else {
			c.AccessType = access
		}
		caps = append(caps, c)
	}
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	return &csi.CreateVolumeRequest{
		Name:                      volumeName(claim),
		Parameters:                params,
		VolumeCapabilities:        caps,
		CapacityRange:             &csi.CapacityRange{RequiredBytes: size.Value()},
		AccessibilityRequirements: topo,
	}, nil
}

// persistentVolume is the PersistentVolume of the volume CreateVolume
// made for the claim.
func persistentVolume(claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, req *csi.CreateVolumeRequest, vol *csi.Volume, driverName string) *corev1.PersistentVolume {
	// CapacityBytes 0 means unknown: the volume's writes take what the
	// node's disk has. The API server needs a size; the claim's is it.
	capacity := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if vol.GetCapacityBytes() > 0 {
		capacity = *resource.NewQuantity(vol.GetCapacityBytes(), resource.BinarySI)
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	var fsType string
	if caps := req.GetVolumeCapabilities(); len(caps) > 0 {
		fsType = caps[0].GetMount().GetFsType()
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        req.GetName(),
			Annotations: map[string]string{AnnProvisionedBy: driverName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: capacity},
			AccessModes:                   slices.Clone(claim.Spec.AccessModes),
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			MountOptions:                  slices.Clone(class.MountOptions),
			VolumeMode:                    claim.Spec.VolumeMode,
			NodeAffinity:                  nodeAffinity(vol.GetAccessibleTopology()),
			ClaimRef: &corev1.ObjectReference{
				Kind:            "PersistentVolumeClaim",
				APIVersion:      "v1",
				Namespace:       claim.Namespace,
				Name:            claim.Name,
				UID:             claim.UID,
				ResourceVersion: claim.ResourceVersion,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver:           driverName,
				VolumeHandle:     vol.GetVolumeId(),
				FSType:           fsType,
				VolumeAttributes: maps.Clone(vol.GetVolumeContext()),
			}},
		},
	}
	if reclaim == corev1.PersistentVolumeReclaimDelete {
		pv.Finalizers = []string{Finalizer}
	}
	return pv
}

// nodeAffinity requires a node in one of the topologies; nil for a volume
// every node reaches.
func nodeAffinity(topology []*csi.Topology) *corev1.VolumeNodeAffinity {
	var terms []corev1.NodeSelectorTerm
	for _, t := range topology {
		if len(t.GetSegments()) == 0 {
			continue
		}
		var term corev1.NodeSelectorTerm
		for _, k := range slices.Sorted(maps.Keys(t.GetSegments())) {
			term.MatchExpressions = append(term.MatchExpressions, corev1.NodeSelectorRequirement{
				Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{t.GetSegments()[k]},
			})
		}
		terms = append(terms, term)
	}
	if len(terms) == 0 {
		return nil
	}
	return &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: terms}}
}

// ours reports whether this provisioner made pv and deletes its volume.
func ours(pv *corev1.PersistentVolume, driverName string) bool {
	return pv.Annotations[AnnProvisionedBy] == driverName && pv.Spec.CSI != nil && pv.Spec.CSI.Driver == driverName
}

// wantsFinalizer says whether pv should carry Finalizer: yes while its
// reclaim policy is Delete and it is bound, no once the policy is changed
// to keep the volume; otherwise whatever it has.
func wantsFinalizer(pv *corev1.PersistentVolume) (want, decided bool) {
	switch {
	case pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete:
		return false, true
	case pv.DeletionTimestamp == nil && pv.Status.Phase == corev1.VolumeBound:
		return true, true
	}
	return false, false
}

// shouldDelete says whether pv's volume is to be deleted now: its claim
// is gone (the binder marked it Released) and its reclaim policy is
// Delete. A PersistentVolume being deleted whose finalizer is gone has
// been handled already.
func shouldDelete(pv *corev1.PersistentVolume) bool {
	if pv.DeletionTimestamp != nil && !slices.Contains(pv.Finalizers, Finalizer) {
		return false
	}
	return pv.Status.Phase == corev1.VolumeReleased && pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete
}
