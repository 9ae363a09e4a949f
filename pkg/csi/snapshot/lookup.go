package snapshot

import (
	"context"
	"fmt"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/internal/record"
	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// controllerVolume is what ControllerRecords reads of the controller
// service's record of a volume it created (pkg/csi/controller,
// <StateDir>/controller/<id>.json).
type controllerVolume struct {
	ID     string `json:"id"`
	Params struct {
		LayerSet string `json:"layerSet"`
	} `json:"params"`
	Writable bool `json:"writable"`
}

// ControllerRecords looks volumes up in the records of a controller
// service whose state directory is stateDir: the monolith plugin's own
// (`node --controller`), whose volumes this node composes.
func ControllerRecords(stateDir string) (Lookup, error) {
	recs, err := record.Open(filepath.Join(stateDir, "controller"), record.Options[controllerVolume]{StaleTemp: forever})
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, id string) (VolumeInfo, error) {
		v, err := recs.Load(id)
		if err != nil || v == nil {
			return VolumeInfo{}, err
		}
		return VolumeInfo{Exists: true, LayerSet: v.Params.LayerSet, ReadOnly: !v.Writable}, nil
	}, nil
}

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
