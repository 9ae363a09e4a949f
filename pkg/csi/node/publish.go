package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/assemble"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/overlay"
)

// NodePublishVolume composes an inline ephemeral volume at the target, or
// bind-mounts a staged persistent volume there.
func (n *Server) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if err := n.checkMountRequest(req.GetVolumeId(), "target_path", req.GetTargetPath(), req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	ephemeral := isEphemeral(req.GetVolumeContext())
	if ephemeral {
		if err := rpc.RequireField("volume_context."+names.ContextLayerSet, req.GetVolumeContext()[names.ContextLayerSet]); err != nil {
			return nil, err
		}
	} else {
		if req.GetStagingTargetPath() == "" {
			return nil, status.Errorf(codes.FailedPrecondition,
				"staging_target_path is missing: volume %s is not an inline ephemeral volume (%s is not \"true\"), so it must be staged first",
				req.GetVolumeId(), names.ContextEphemeral)
		}
		if err := rpc.RequirePath("staging_target_path", req.GetStagingTargetPath()); err != nil {
			return nil, err
		}
		if err := n.checkPath("staging_target_path", req.GetStagingTargetPath()); err != nil {
			return nil, err
		}
	}
	release, err := n.lockTarget(req.GetVolumeId(), "target_path", req.GetTargetPath())
	if err != nil {
		return nil, err
	}
	defer release()
	if ephemeral {
		pullCtx, pulling := n.watchPull(ctx, req.GetVolumeId(), req.GetVolumeContext())
		err = pulling(n.publishEphemeral(pullCtx, req))
	} else {
		err = n.publishPersistent(ctx, req)
	}
	if err != nil {
		return nil, n.status(ctx, err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (n *Server) publishEphemeral(ctx context.Context, req *csi.NodePublishVolumeRequest) error {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	readOnly := req.GetReadonly() || rpc.ReadOnlyMode(req.GetVolumeCapability())
	prev, err := n.state.load(id)
	if err != nil {
		return err
	}
	if prev != nil {
		if prev.Kind != kindEphemeral {
			return status.Errorf(codes.AlreadyExists, "volume %s is a persistent volume on this node, not an inline ephemeral one", id)
		}
		if prev.MountPath != target {
			return status.Errorf(codes.AlreadyExists, "inline volume %s is published at %s; it cannot also be published at %s", id, prev.MountPath, target)
		}
		mounted, err := isMounted(target)
		if err != nil {
			return err
		}
		if mounted && prev.Phase == phasePublished {
			if prev.ReadOnly != readOnly {
				return status.Errorf(codes.AlreadyExists, "volume %s is published at %s with readonly=%t, not %t", id, target, prev.ReadOnly, readOnly)
			}
			return nil
		}
	}
	size, deprecated, err := askedSize(req.GetVolumeContext())
	if err != nil {
		return err
	}
	rec := &volumeRecord{
		ID:        id,
		Kind:      kindEphemeral,
		LayerSet:  req.GetVolumeContext()[names.ContextLayerSet],
		Phase:     phasePublishing,
		MountPath: target,
		ReadOnly:  readOnly,
	}
	if err := n.state.save(rec); err != nil {
		return err
	}
	vol, err := n.assemble.Mount(ctx, assemble.Request{
		VolumeID:     id,
		LayerSet:     rec.LayerSet,
		Pod:          podInfo(req.GetVolumeContext()),
		Target:       target,
		ReadOnly:     readOnly,
		Ephemeral:    true,
		MountOptions: req.GetVolumeCapability().GetMount().GetMountFlags(),
		Size:         size,
	})
	if err != nil {
		if prev != nil {
			// Published before and found unmounted (a reboot): keep its
			// upper for the retry; unpublishing deletes it.
			if serr := n.state.save(prev); serr != nil {
				err = errors.Join(err, serr)
			}
			return err
		}
		if uerr := n.removeEphemeral(context.WithoutCancel(ctx), rec); uerr != nil {
			logger(ctx).Error(uerr, "Cannot undo the failed publish; it is retried at unpublish or restart")
		}
		return err
	}
	if rec.MountDev, err = mountDev(target); err != nil {
		return err
	}
	rec.Flags, rec.Phase = vol.Flags, phasePublished
	if err := n.state.save(rec); err != nil {
		return err
	}
	n.warnSize(ctx, req.GetVolumeContext(), id, size, deprecated, vol)
	return nil
}

// removeEphemeral unmounts an inline volume, deletes its upper and init
// layer and its mount point, then forgets it.
func (n *Server) removeEphemeral(ctx context.Context, rec *volumeRecord) error {
	if err := ours(rec.ID, rec.MountPath, rec.MountDev); err != nil {
		return err
	}
	// The store owns the overlay's mount: it unmounts the target its own
	// record names, which is rec.MountPath, and only then deletes the
	// directories. A target the store has no volume for holds nothing of
	// ours, so nothing is unmounted there.
	err := n.cfg.Store.Unmount(ctx, rec.ID, layers.RemoveUpper)
	if errors.Is(err, layers.ErrVolumeNotFound) {
		// The publish failed before the store made the volume: a mount
		// at the target now is someone else's, left where it is.
		if mounted, merr := isMounted(rec.MountPath); merr == nil && mounted {
			return n.state.remove(rec)
		}
	} else if err != nil {
		return fmt.Errorf("remove inline volume %s: %w", rec.ID, err)
	}
	if err := removeMountPoint(rec.MountPath); err != nil {
		return err
	}
	return n.state.remove(rec)
}

func (n *Server) publishPersistent(ctx context.Context, req *csi.NodePublishVolumeRequest) error {
	id, target, staging := req.GetVolumeId(), req.GetTargetPath(), req.GetStagingTargetPath()
	readOnly := req.GetReadonly()
	rec, err := n.state.load(id)
	if err != nil {
		return err
	}
	if rec == nil || rec.Kind != kindPersistent || rec.Phase != phaseStaged || rec.MountPath != staging {
		return status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s; call NodeStageVolume first", id, staging)
	}
	if target == staging {
		return status.Errorf(codes.InvalidArgument, "target_path and staging_target_path are both %s", target)
	}
	staged, err := isMounted(staging)
	if err != nil {
		return err
	}
	if !staged {
		return status.Errorf(codes.FailedPrecondition, "volume %s is recorded as staged at %s, but nothing is mounted there; stage it again", id, staging)
	}
	if t := rec.target(target); t != nil && t.Phase == phasePublished {
		mounted, err := isMounted(target)
		if err != nil {
			return err
		}
		if mounted {
			if t.ReadOnly != readOnly {
				return status.Errorf(codes.AlreadyExists, "volume %s is published at %s with readonly=%t, not %t", id, target, t.ReadOnly, readOnly)
			}
			return nil
		}
	}
	// SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod) allows one publication.
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		for _, t := range rec.Targets {
			if t.Path != target {
				return status.Errorf(codes.FailedPrecondition,
					"volume %s has access mode SINGLE_NODE_SINGLE_WRITER and is already published at %s; unpublish it there first", id, t.Path)
			}
		}
	}
	rec.setTarget(targetRecord{Path: target, ReadOnly: readOnly, Phase: phasePublishing})
	if err := n.state.save(rec); err != nil {
		return err
	}
	// The bind starts from the staged volume's attributes (nosuid, nodev,
	// or setuid where the LayerSet allows it), then the publish's own.
	flags, err := overlay.ParseFlags(rec.Flags, req.GetVolumeCapability().GetMount().GetMountFlags())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "volume_capability.mount.mount_flags: %v", err)
	}
	flags.ReadOnly = flags.ReadOnly || readOnly
	if err := bindMount(staging, target, flags); err != nil {
		if rerr := removeMountPoint(target); rerr != nil {
			err = errors.Join(err, rerr)
		}
		rec.dropTarget(target)
		if serr := n.state.save(rec); serr != nil {
			err = errors.Join(err, serr)
		}
		return fmt.Errorf("publish volume %s at %s: %w", id, target, err)
	}
	dev, err := mountDev(target)
	if err != nil {
		return err
	}
	rec.setTarget(targetRecord{Path: target, ReadOnly: readOnly, Phase: phasePublished, MountDev: dev})
	return n.state.save(rec)
}

// NodeUnpublishVolume undoes NodePublishVolume. A target the node does not
// know and that is not mounted is already unpublished: kubelet retries
// after restarts and must not get stuck on it.
func (n *Server) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if err := n.checkPathRequest(req.GetVolumeId(), "target_path", req.GetTargetPath()); err != nil {
		return nil, err
	}
	release, err := n.lock(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	defer release()
	if err := n.unpublish(ctx, req.GetVolumeId(), req.GetTargetPath()); err != nil {
		return nil, n.status(ctx, err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (n *Server) unpublish(ctx context.Context, id, target string) error {
	rec, err := n.state.load(id)
	if err != nil {
		return err
	}
	switch {
	case rec != nil && rec.Kind == kindEphemeral && rec.MountPath == target:
		rec.Phase = phaseUnpublishing
		if err := n.state.save(rec); err != nil {
			return err
		}
		return n.removeEphemeral(ctx, rec)
	case rec != nil && rec.Kind == kindPersistent && rec.MountPath == target:
		return status.Errorf(codes.InvalidArgument, "%s is the staging path of volume %s; unstage it with NodeUnstageVolume", target, id)
	case rec != nil && rec.target(target) != nil:
		t := *rec.target(target)
		if err := ours(id, target, t.MountDev); err != nil {
			return err
		}
		t.Phase = phaseUnpublishing
		rec.setTarget(t)
		if err := n.state.save(rec); err != nil {
			return err
		}
		if err := overlay.Unmount(ctx, target); err != nil {
			return err
		}
		if err := removeMountPoint(target); err != nil {
			return err
		}
		rec.dropTarget(target)
		return n.state.save(rec)
	}
	return n.releaseUnknown(ctx, id, target)
}

// releaseUnknown handles a path kubelet associates with the volume but
// the node has no record of (the call is a retry of one that completed):
// an empty mount point left there is removed. A mount there is not one
// this plugin made (it records every mount before making it), so it is
// refused, not unmounted: it may be another volume's, or anyone's. Store
// directories are left alone, since without a record nothing tells an
// inline volume's upper from a persistent one's.
func (n *Server) releaseUnknown(ctx context.Context, id, path string) error {
	mounted, err := isMounted(path)
	if err != nil {
		return err
	}
	if mounted {
		return status.Errorf(codes.FailedPrecondition,
			"this node has no record of volume %s at %s, and what is mounted there was not made by this plugin: it is left alone; unmount it by hand if it is stale", id, path)
	}
	// A directory that holds files is no mount point this plugin left.
	if err := removeMountPoint(path); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
