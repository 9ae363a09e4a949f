package snapshot

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// PersistentVolumes looks volumes up among the PersistentVolumes of
// driver, by volume handle (cluster mode). The reader is asked directly
// (the manager's API reader): this is for snapshots of volumes never
// staged on this node, which are rare.
func PersistentVolumes(pvs client.Reader, driver string) Lookup {
	return func(ctx context.Context, id string) (VolumeInfo, error) {
		var list corev1.PersistentVolumeList
		if err := pvs.List(ctx, &list); err != nil {
			return VolumeInfo{}, fmt.Errorf("list PersistentVolumes: %w", err)
		}
		for _, pv := range list.Items {
			c := pv.Spec.CSI
			if c == nil || c.Driver != driver || c.VolumeHandle != id {
				continue
			}
			onlyReads := len(pv.Spec.AccessModes) > 0
			for _, m := range pv.Spec.AccessModes {
				onlyReads = onlyReads && m == corev1.ReadOnlyMany
			}
			return VolumeInfo{Exists: true, LayerSet: c.VolumeAttributes[names.ContextLayerSet], ReadOnly: c.ReadOnly || onlyReads}, nil
		}
		return VolumeInfo{}, nil
	}
}
