package node

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/quota"
)

// NodeExpandVolume raises the limit of a staged or published volume's
// upper, live: the pod keeps its mount and may write more at once.
func (n *Server) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	id, path := req.GetVolumeId(), req.GetVolumePath()
	if err := rpc.RequireField("volume_id", id); err != nil {
		return nil, err
	}
	if err := rpc.RequireField("volume_path", path); err != nil {
		return nil, err
	}
	release, err := n.lock(id)
	if err != nil {
		return nil, err
	}
	defer release()
	capacity, err := n.expand(ctx, id, path, req.GetCapacityRange())
	if err != nil {
		return nil, n.status(ctx, err)
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: capacity}, nil
}

func (n *Server) expand(ctx context.Context, id, path string, cr *csi.CapacityRange) (int64, error) {
	rec, err := n.state.load(id)
	if err != nil {
		return 0, err
	}
	if rec == nil {
		return 0, status.Errorf(codes.NotFound, "volume %s is not on this node", id)
	}
	// The volume first: an unknown one is NotFound whatever path it names.
	if err := n.checkPath("volume_path", path); err != nil {
		return 0, err
	}
	if !rec.has(path) {
		return 0, status.Errorf(codes.NotFound, "volume %s is not staged or published at %s", id, path)
	}
	bytes, err := expandTo(cr)
	if err != nil {
		return 0, err
	}
	vol, err := n.cfg.Store.Resize(ctx, id, bytes)
	switch {
	case errors.Is(err, layers.ErrNotLimited):
		// Nothing bounds it: it can hold the new size already.
		logger(ctx).Info("Volume has no size limit to raise", "volumeID", id, "capacity", bytes)
		return bytes, nil
	case errors.Is(err, quota.ErrShrink):
		return 0, status.Errorf(codes.OutOfRange, "volume %s cannot shrink: %v", id, err)
	case err != nil:
		return 0, err
	}
	logger(ctx).Info("Raised the volume's size limit", "volumeID", id, "capacity", quantity(vol.Limit.Bytes))
	return vol.Limit.Bytes, nil
}

// expandTo is the size a capacity range asks a volume to grow to.
func expandTo(cr *csi.CapacityRange) (int64, error) {
	bytes := cr.GetRequiredBytes()
	if bytes == 0 {
		bytes = cr.GetLimitBytes()
	}
	if bytes <= 0 {
		return 0, status.Error(codes.InvalidArgument, "capacity_range: required_bytes (or limit_bytes) must be a positive size")
	}
	if lim := cr.GetLimitBytes(); lim > 0 && lim < bytes {
		return 0, status.Errorf(codes.InvalidArgument, "capacity_range: limit_bytes %d is below required_bytes %d", lim, bytes)
	}
	if bytes < quota.MinLimit || bytes > quota.MaxLimit {
		return 0, status.Errorf(codes.OutOfRange, "capacity %d bytes is outside 1Mi to 1Pi", bytes)
	}
	return bytes, nil
}
