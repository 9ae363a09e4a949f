package driver

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// composeSpec says what to compose for one volume and where to mount it.
type composeSpec struct {
	volumeID string
	layerSet string
	pod      compose.PodInfo // NodeName and VolumeID are filled in
	target   string
	readOnly bool
	// ephemeral volumes cannot outlive a reboot, so their metadata is
	// written atomically but not synced to disk.
	ephemeral bool
}

// compose resolves the LayerSet, pulls what the store lacks, renders the
// init files and mounts the volume at spec.target.
//
// The pull runs detached from ctx inside the store: when kubelet's
// deadline ends this call, the download goes on, and the retry joins it.
func (n *NodeServer) compose(ctx context.Context, spec composeSpec) error {
	ls, chain, err := n.cfg.Catalog.Resolve(ctx, spec.layerSet)
	if err != nil {
		return err
	}
	if err := n.cfg.Store.Import(ctx, compose.Sources(chain)); err != nil {
		return fmt.Errorf("pull the layers of LayerSet %q: %w", spec.layerSet, err)
	}
	pod := spec.pod
	pod.NodeName, pod.VolumeID = n.cfg.NodeID, spec.volumeID
	files, err := compose.RenderInit(ctx, ls.Spec.Init, pod, n.cfg.Keys)
	if err != nil {
		return fmt.Errorf("render the init files of LayerSet %q: %w", spec.layerSet, err)
	}
	diffIDs := make([]v1.Hash, len(chain))
	for i, l := range chain {
		diffIDs[i] = l.DiffID
	}
	_, err = n.cfg.Store.Mount(ctx, layers.VolumeSpec{
		ID:        spec.volumeID,
		Layers:    diffIDs,
		Init:      files,
		ReadOnly:  spec.readOnly,
		Target:    spec.target,
		Ephemeral: spec.ephemeral,
	})
	if err != nil {
		return fmt.Errorf("compose LayerSet %q: %w", spec.layerSet, err)
	}
	return nil
}

// podInfo reads what kubelet tells about the pod from a volume context.
func podInfo(volumeContext map[string]string) compose.PodInfo {
	return compose.PodInfo{
		PodName:        volumeContext[ContextPodName],
		PodNamespace:   volumeContext[ContextPodNamespace],
		PodUID:         volumeContext[ContextPodUID],
		ServiceAccount: volumeContext[ContextServiceAccount],
	}
}
