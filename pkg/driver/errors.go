package driver

import (
	"context"
	"errors"
	"net"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

// preconditions are errors the user fixes in the LayerSet or its images;
// retrying the same call does not help until they do.
var preconditions = []error{
	compose.ErrLayerSetNotFound, catalog.ErrNotReady, compose.ErrCycle, compose.ErrTooManyLayers,
	compose.ErrInvalidSpec, layers.ErrTooManyLayers, layers.ErrDigestMismatch, layers.ErrInvalid,
	source.ErrNotFound, source.ErrUnauthorized, source.ErrInvalidReference, source.ErrUnsupported,
}

// codeOf classifies an error of the store, compose, catalog or source
// packages as a CSI status code.
func codeOf(err error) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return codes.ResourceExhausted
	case errors.Is(err, layers.ErrVolumeNotFound):
		return codes.NotFound
	case errors.Is(err, layers.ErrLayerMissing):
		return codes.Unavailable // collected meanwhile; the retry imports it again
	}
	for _, p := range preconditions {
		if errors.Is(err, p) {
			return codes.FailedPrecondition
		}
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return codes.Unavailable // the registry could not be reached; a retry may
	}
	return codes.Internal
}

// toStatus turns err into the status a CSI call returns. ctx is the call's:
// once its deadline has passed, whatever failed did so because of it.
func toStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	code := codeOf(err)
	if ctxErr := ctx.Err(); ctxErr != nil && code != codes.DeadlineExceeded && code != codes.Canceled {
		code = codeOf(ctxErr)
	}
	return status.Error(code, err.Error())
}
