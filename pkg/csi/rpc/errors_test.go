package rpc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

var errKnown = errors.New("known to the classifier")

func TestCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("publish volume v: %w", err) }
	known := func(err error) (codes.Code, bool) {
		if errors.Is(err, errKnown) {
			return codes.NotFound, true
		}
		return codes.OK, false
	}
	tests := []struct {
		err  error
		want codes.Code
	}{
		{wrap(context.DeadlineExceeded), codes.DeadlineExceeded},
		{wrap(context.Canceled), codes.Canceled},
		{wrap(&fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), codes.ResourceExhausted},
		{wrap(syscall.EDQUOT), codes.ResourceExhausted},
		{wrap(compose.ErrLayerSetNotFound), codes.FailedPrecondition},
		{wrap(catalog.ErrNotReady), codes.FailedPrecondition},
		{wrap(compose.ErrCycle), codes.FailedPrecondition},
		{wrap(compose.ErrTooManyLayers), codes.FailedPrecondition},
		{wrap(source.ErrUnauthorized), codes.FailedPrecondition},
		{wrap(source.ErrNotFound), codes.FailedPrecondition},
		{wrap(errKnown), codes.NotFound},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), codes.Unavailable},
		{wrap(syscall.ECONNRESET), codes.Unavailable},
		// An errno of the node's own disk is not the registry's: syscall.Errno
		// satisfies net.Error, and once made every errno Unavailable.
		{wrap(&fs.PathError{Op: "mkdir", Path: "/x", Err: syscall.EIO}), codes.Internal},
		{wrap(syscall.EBUSY), codes.Internal},
		{wrap(status.Error(codes.Aborted, "busy")), codes.Aborted},
		{errors.New("something else"), codes.Internal},
	}
	for _, tt := range tests {
		if got := Code(tt.err, known); got != tt.want {
			t.Errorf("Code(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestStatusAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	// Whatever failed once the deadline passed failed because of it.
	err := Status(ctx, errors.New("read tcp: use of closed network connection"))
	if s, _ := status.FromError(err); s.Code() != codes.DeadlineExceeded || s.Message() != "read tcp: use of closed network connection" {
		t.Errorf("got %v", err)
	}
	if Status(context.Background(), nil) != nil {
		t.Error("nil error became a status")
	}
}
