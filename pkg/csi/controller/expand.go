package controller

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
)

// ControllerExpandVolume raises a volume's size in its record, up to its
// LayerSet's maxSize. The node applies the new size to the live volume
// (NodeExpandVolume), so a writable volume answers
// node_expansion_required. A read-only volume has no upper for a size to
// limit: its new size is only recorded and reported, and the node has
// nothing to do. A volume never shrinks: its upper may already hold more
// than a smaller size. An unlimited volume (one created without a size)
// expands to a limit, the size asked for. Asked again for the size the
// volume has, it answers as the first time.
func (c *Server) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := rpc.RequireField("volume_id", id); err != nil {
		return nil, err
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "capacity_range is missing: it is the size to expand to")
	}
	_, _, size, err := checkCapacityRange(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, status.Error(codes.InvalidArgument, "capacity_range asks for no size: set required_bytes to the size to expand to")
	}
	if vc := req.GetVolumeCapability(); vc != nil {
		if err := rpc.RequireMountCapability(vc); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "volume_capability: %s", status.Convert(err).Message())
		}
	}
	if !isControllerVolumeID(id) {
		return nil, status.Errorf(codes.NotFound, "volume %s was not created by this controller", id)
	}
	v, release, err := c.lockVolume(id)
	if err != nil {
		return nil, err
	}
	defer release()
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist in the controller's records: only volumes it created can be expanded "+
			"(a static PersistentVolume's size is its volumeAttributes.%s)", id, names.ContextSize)
	}
	if err := checkMinSize(size, v.Writable); err != nil {
		return nil, err
	}
	answer := &csi.ControllerExpandVolumeResponse{CapacityBytes: size, NodeExpansionRequired: v.Writable}
	switch {
	case size == v.SizeBytes:
		return answer, nil
	case v.SizeBytes > 0 && size < v.SizeBytes:
		return nil, status.Errorf(codes.OutOfRange, "volume %s cannot shrink from %s to %s: its upper may already hold more than the smaller size",
			id, quantity(v.SizeBytes), quantity(size))
	}
	ls, err := c.layerSetOf(ctx, v)
	if err != nil {
		return nil, err
	}
	if err := checkMaxSize(ls, size, fmt.Sprintf("volume %s cannot be expanded", id)); err != nil {
		return nil, err
	}
	grown := *v
	grown.Sized, grown.SizeBytes = true, size
	if err := c.volumes.Save(id, &grown, atomicfile.Durable); err != nil {
		return nil, rpc.Status(ctx, fmt.Errorf("volume %s: %w", id, err))
	}
	klog.FromContext(ctx).Info("Expanded volume", "name", v.Name, "volumeID", id, "layerSet", v.Params.LayerSet,
		"from", describeSize(v.SizeBytes), "to", describeSize(size), "nodeExpansionRequired", v.Writable)
	return answer, nil
}

// layerSetOf reads the LayerSet of an existing volume for its maxSize; nil
// without a catalog. A LayerSet that is gone, or does not resolve now (a
// precondition the user fixes), has no maxSize to read, since the catalog
// gives out only resolved LayerSets; a volume that exists must still be
// able to grow: nil too, logged. Other failures (a deadline) are the
// caller's to retry.
func (c *Server) layerSetOf(ctx context.Context, v *createdVolume) (*v1alpha1.LayerSet, error) {
	if c.cfg.Catalog == nil {
		return nil, nil
	}
	ls, _, err := c.cfg.Catalog.Resolve(ctx, v.Params.LayerSet)
	switch {
	case err != nil && rpc.Code(err) == codes.FailedPrecondition:
		klog.FromContext(ctx).Info("Expanding a volume without checking its LayerSet's maxSize: the LayerSet does not resolve",
			"volumeID", v.ID, "layerSet", v.Params.LayerSet, "err", err)
		return nil, nil
	case err != nil:
		return nil, rpc.Status(ctx, fmt.Errorf("volume %s: reading the maxSize of LayerSet %q: %w", v.ID, v.Params.LayerSet, err))
	}
	return ls, nil
}
