package node

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/assemble"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/quota"
)

// badLayer are the errors of a layer the user has to fix in the image:
// hostile or broken entries the extractor refuses, content that is not what
// its digest says, a blob that is no compressed tar.
var badLayer = []error{
	layers.ErrDigestMismatch, layers.ErrCorruptLayer,
	archive.ErrInvalidName, archive.ErrInvalidHeader, archive.ErrUnsafePath,
	archive.ErrLinkTarget, archive.ErrOverlayXattr, archive.ErrLimit,
}

// classifyStore tells the codes of the layer store's errors.
func classifyStore(err error) (codes.Code, bool) {
	// Before the archive's limits: a layer over the node's budget wraps
	// the archive's refusal too, but is the node's resource, not the
	// image's fault.
	if errors.Is(err, layers.ErrLayerTooLarge) {
		return codes.ResourceExhausted, true
	}
	for _, e := range badLayer {
		if errors.Is(err, e) {
			return codes.FailedPrecondition, true
		}
	}
	switch {
	case errors.Is(err, assemble.ErrSize):
		return codes.InvalidArgument, true
	case errors.Is(err, quota.ErrShrink):
		return codes.OutOfRange, true
	case errors.Is(err, layers.ErrLimit) && errors.Is(err, quota.ErrUnsupported):
		// The node cannot enforce sizes as it was told to: the
		// administrator's to fix, not the caller's.
		return codes.FailedPrecondition, true
	case errors.Is(err, layers.ErrVolumeNotFound):
		return codes.NotFound, true
	case errors.Is(err, layers.ErrTargetBusy):
		return codes.FailedPrecondition, true
	case errors.Is(err, overlay.ErrSymlinkInTarget), errors.Is(err, assemble.ErrMountOptions):
		return codes.InvalidArgument, true
	case errors.Is(err, layers.ErrLayerMissing):
		return codes.Unavailable, true // collected meanwhile; the retry imports it again
	case errors.Is(err, layers.ErrTooManyLayers), errors.Is(err, layers.ErrInvalid):
		return codes.FailedPrecondition, true
	}
	return codes.OK, false
}

// status turns err into the status a node call returns.
func (n *Server) status(ctx context.Context, err error) error {
	return rpc.Status(ctx, err, classifyStore)
}
