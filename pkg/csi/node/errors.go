package node

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/layerset/layerset-csi/pkg/assemble"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/overlay"
)

// classifyStore tells the codes of the layer store's errors.
func classifyStore(err error) (codes.Code, bool) {
	switch {
	case errors.Is(err, layers.ErrVolumeNotFound):
		return codes.NotFound, true
	case errors.Is(err, layers.ErrTargetBusy):
		return codes.FailedPrecondition, true
	case errors.Is(err, overlay.ErrSymlinkInTarget), errors.Is(err, assemble.ErrMountOptions):
		return codes.InvalidArgument, true
	case errors.Is(err, layers.ErrLayerMissing):
		return codes.Unavailable, true // collected meanwhile; the retry imports it again
	case errors.Is(err, layers.ErrTooManyLayers), errors.Is(err, layers.ErrDigestMismatch), errors.Is(err, layers.ErrInvalid):
		return codes.FailedPrecondition, true
	}
	return codes.OK, false
}

// status turns err into the status a node call returns.
func (n *Server) status(ctx context.Context, err error) error {
	return rpc.Status(ctx, err, classifyStore)
}
