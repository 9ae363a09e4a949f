package rpc

import (
	"context"
	"errors"
	"net"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

// Classifier tells the code of the errors one package defines; ok is
// false for an error it does not know. A service passes its own to Code
// and Status, so that this package links only what both sides share.
type Classifier func(err error) (code codes.Code, ok bool)

// preconditions are errors the user fixes in the LayerSet or its images;
// retrying the same call does not help until they do.
var preconditions = []error{
	compose.ErrLayerSetNotFound, catalog.ErrNotReady, compose.ErrCycle, compose.ErrTooManyLayers,
	compose.ErrInvalidSpec, source.ErrNotFound, source.ErrUnauthorized, source.ErrInvalidReference,
	source.ErrUnsupported,
}

// networkErrnos are the errnos of a registry that cannot be reached now;
// a retry may reach it.
var networkErrnos = []syscall.Errno{
	syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.ETIMEDOUT,
	syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN, syscall.EPIPE,
}

// Code classifies an error of the compose, catalog or source packages, or
// of one the classifiers know (asked first), as a CSI status code.
func Code(err error, classifiers ...Classifier) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, c := range classifiers {
		if code, ok := c(err); ok {
			return code
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return codes.ResourceExhausted
	}
	for _, p := range preconditions {
		if errors.Is(err, p) {
			return codes.FailedPrecondition
		}
	}
	// syscall.Errno satisfies net.Error: an errno that is not about the
	// network (EIO, EACCES, EBUSY, ...) is the node's fault, not the
	// registry's, and retrying does not help.
	var errno syscall.Errno
	if errors.As(err, &errno) {
		for _, n := range networkErrnos {
			if errno == n {
				return codes.Unavailable
			}
		}
		return codes.Internal
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return codes.Unavailable // the registry could not be reached; a retry may
	}
	return codes.Internal
}

// Status turns err into the status a CSI call returns. ctx is the call's:
// once its deadline has passed, whatever failed did so because of it.
func Status(ctx context.Context, err error, classifiers ...Classifier) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	code := Code(err, classifiers...)
	if ctxErr := ctx.Err(); ctxErr != nil && code != codes.DeadlineExceeded && code != codes.Canceled {
		code = Code(ctxErr)
	}
	return status.Error(code, err.Error())
}
