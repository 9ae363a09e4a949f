package node

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/assemble"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// NodeStageVolume composes a persistent volume at the staging path. The
// upper of an earlier staging on this node is used again, so the volume
// holds what was written to it here before.
func (n *Server) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	if err := n.checkMountRequest(req.GetVolumeId(), "staging_target_path", req.GetStagingTargetPath(), req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	if err := rpc.RequireField("volume_context."+names.ContextLayerSet, req.GetVolumeContext()[names.ContextLayerSet]); err != nil {
		return nil, err
	}
	release, err := n.lockTarget(req.GetVolumeId(), "staging_target_path", req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	defer release()
	pullCtx, pulling := n.watchPull(ctx, req.GetVolumeId(), req.GetVolumeContext())
	if err := pulling(n.stage(pullCtx, req)); err != nil {
		return nil, n.status(ctx, err)
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

func (n *Server) stage(ctx context.Context, req *csi.NodeStageVolumeRequest) error {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	readOnly := rpc.ReadOnlyMode(req.GetVolumeCapability())
	prev, err := n.state.load(id)
	if err != nil {
		return err
	}
	var targets []targetRecord
	if prev != nil {
		if prev.Kind != kindPersistent {
			return status.Errorf(codes.AlreadyExists, "volume %s is an inline ephemeral volume on this node, not a persistent one", id)
		}
		if prev.Phase == phaseStaged {
			mounted, err := isMounted(prev.MountPath)
			if err != nil {
				return err
			}
			switch {
			case mounted && prev.MountPath != staging:
				return status.Errorf(codes.AlreadyExists, "volume %s is staged at %s, not %s", id, prev.MountPath, staging)
			case mounted && prev.ReadOnly != readOnly:
				return status.Errorf(codes.AlreadyExists, "volume %s is staged with read-only=%t; the capability asks for %t", id, prev.ReadOnly, readOnly)
			case mounted:
				return nil
			}
		}
		targets = prev.Targets
	}
	size, deprecated, err := askedSize(req.GetVolumeContext())
	if err != nil {
		return err
	}
	rec := &volumeRecord{
		ID:        id,
		Kind:      kindPersistent,
		LayerSet:  req.GetVolumeContext()[names.ContextLayerSet],
		Phase:     phaseStaging,
		MountPath: staging,
		ReadOnly:  readOnly,
		Targets:   targets,
	}
	if err := n.state.save(rec); err != nil {
		return err
	}
	// Pod information is not passed to NodeStageVolume: a persistent
	// volume's init files see the node and volume only.
	vol, err := n.assemble.Mount(ctx, assemble.Request{
		VolumeID: id, LayerSet: rec.LayerSet, Target: staging, ReadOnly: readOnly,
		MountOptions: req.GetVolumeCapability().GetMount().GetMountFlags(),
		Size:         size,
	})
	if err != nil {
		if uerr := n.abandonStage(context.WithoutCancel(ctx), rec); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return err
	}
	if rec.MountDev, err = mountDev(staging); err != nil {
		return err
	}
	rec.Flags, rec.Phase = vol.Flags, phaseStaged
	if err := n.state.save(rec); err != nil {
		return err
	}
	n.warnSize(ctx, req.GetVolumeContext(), id, size, deprecated, vol)
	return nil
}

// abandonStage records a staging that failed before anything was mounted.
// An upper that holds writes of an earlier staging is kept; a volume with
// nothing written (a first staging that failed after the store made its
// directories) is removed with its directories and forgotten.
func (n *Server) abandonStage(ctx context.Context, rec *volumeRecord) error {
	vol, err := n.cfg.Store.Volume(rec.ID)
	switch {
	case len(rec.Targets) > 0:
	case errors.Is(err, layers.ErrVolumeNotFound):
		return n.state.remove(rec)
	case err != nil:
		return err
	case isEmpty(vol.UpperDir()):
		if err := n.cfg.Store.Unmount(ctx, rec.ID, layers.RemoveUpper); err != nil && !errors.Is(err, layers.ErrVolumeNotFound) {
			return err
		}
		return n.state.remove(rec)
	}
	rec.Phase, rec.MountPath = phaseUnstaged, ""
	return n.state.save(rec)
}

// isEmpty reports whether dir is a directory with nothing in it.
func isEmpty(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	_, err = f.Readdirnames(1)
	return f.Close() == nil && errors.Is(err, io.EOF)
}

// NodeUnstageVolume unmounts a persistent volume from the staging path
// and keeps its upper for the next NodeStageVolume on this node.
func (n *Server) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	if err := n.checkPathRequest(req.GetVolumeId(), "staging_target_path", req.GetStagingTargetPath()); err != nil {
		return nil, err
	}
	release, err := n.lock(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	defer release()
	if err := n.unstage(ctx, req.GetVolumeId(), req.GetStagingTargetPath()); err != nil {
		return nil, n.status(ctx, err)
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func (n *Server) unstage(ctx context.Context, id, staging string) error {
	rec, err := n.state.load(id)
	if err != nil {
		return err
	}
	if rec == nil || rec.MountPath != staging {
		return n.releaseUnknown(ctx, id, staging)
	}
	if rec.Kind != kindPersistent {
		return status.Errorf(codes.InvalidArgument, "%s is the target of inline volume %s; unpublish it with NodeUnpublishVolume", staging, id)
	}
	// Kubelet unpublishes every target before unstaging; a bind still in
	// place would keep the overlay alive behind the node's back.
	var live []targetRecord
	for _, t := range rec.Targets {
		mounted, err := isMounted(t.Path)
		if err != nil {
			return err
		}
		if mounted {
			live = append(live, t)
		}
	}
	if len(live) > 0 {
		return status.Errorf(codes.FailedPrecondition, "volume %s is still published at %s; unpublish it first", id, live[0].Path)
	}
	rec.Phase, rec.Targets = phaseUnstaging, nil
	if err := n.state.save(rec); err != nil {
		return err
	}
	if err := n.unmountStaged(ctx, rec); err != nil {
		return err
	}
	rec.Phase, rec.MountPath = phaseUnstaged, ""
	return n.state.save(rec)
}

// unmountStaged unmounts the staging path, keeping the upper, and
// removes the mount point.
func (n *Server) unmountStaged(ctx context.Context, rec *volumeRecord) error {
	if err := ours(rec.ID, rec.MountPath, rec.MountDev); err != nil {
		return err
	}
	if err := n.cfg.Store.Unmount(ctx, rec.ID, layers.KeepUpper); err != nil && !errors.Is(err, layers.ErrVolumeNotFound) {
		return err
	}
	return removeMountPoint(rec.MountPath)
}
